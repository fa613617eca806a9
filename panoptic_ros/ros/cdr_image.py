"""sensor_msgs/Image in its serialized (CDR) form, built straight from a numpy array.

Why: publishing an ``Image`` message from Python costs three copies of the pixels before DDS
sees them (ndarray -> the message's ``array.array``, Python message -> C struct in
``Publisher.publish``, C struct -> CDR in the rmw), plus building the Python message. rclpy's
``Publisher.publish`` also takes the serialized form as ``bytes`` (``publish_raw`` ->
``rcl_publish_serialized_message``; present in Humble, Jazzy and Kilted), so here the CDR bytes
are produced with one copy of the pixels (``bytes.join`` of a small packed prefix and a
memoryview of the array) and handed to rmw as they are.

Buffer lifetime (why nothing here can be mutated under rmw): rclpy's publisher accepts only an
exact ``bytes`` object (``isinstance(msg, bytes)``; a bytearray or memoryview raises
TypeError), which is immutable; its C++ binding takes it by value (``publish_raw(std::string)``,
a copy owned by the call) and ``rcl_publish_serialized_message`` returns only after the rmw has
copied the payload into its own history. The array the bytes were made from is copied by
``bytes.join`` before ``image_cdr`` returns, so the caller may reuse or change it at once.

Wire layout (XCDR1, OMG DDS-XTypes 7.4.1 "plain CDR", the encoding rmw_fastrtps,
rmw_cyclonedds and rmw_connextdds use for ROS 2 messages), offsets after the 4-byte
encapsulation header (``00 01 00 00`` = CDR little endian, ``00 00`` = big endian), each
primitive aligned to its own size:

=====================  ==================================================================
header.stamp.sec       int32
header.stamp.nanosec   uint32
header.frame_id        uint32 length incl. NUL, UTF-8 bytes, NUL
height, width          uint32 each (aligned to 4)
encoding               uint32 length incl. NUL, bytes, NUL (aligned to 4)
is_bigendian           uint8
step                   uint32 (aligned to 4)
data                   uint32 byte count, then the bytes (no trailing padding)
=====================  ==================================================================

Alignment padding bytes are written as zeros. Fast CDR leaves them uninitialised (what
``rclpy.serialization.serialize_message`` returns there differs between processes), so
"byte-identical to today's message" means identical at every byte that is not padding, which
``padding_offsets`` lists for the tests. The data is in host byte order with
``is_bigendian`` telling which, as ``conversions.array_to_image_msg`` does.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import numpy as np

from panoptic_ros.core import encodings

__all__ = ["image_cdr", "padding_offsets"]

_LITTLE = sys.byteorder == "little"
_ENCAPSULATION = b"\x00\x01\x00\x00" if _LITTLE else b"\x00\x00\x00\x00"
_BO = "<" if _LITTLE else ">"
_U32 = struct.Struct(_BO + "I")
_STAMP = struct.Struct(_BO + "iI")
_PAIR = struct.Struct(_BO + "II")
_MAX_U32 = 2**32 - 1


def _pad(offset: int) -> int:
    """Bytes of padding that align ``offset`` (after the encapsulation header) to 4."""
    return -offset % 4


def _string(parts: list[bytes], offset: int, text: bytes) -> int:
    """Append a CDR string (aligned length, bytes, NUL); return the new offset."""
    pad = _pad(offset)
    parts.append(b"\0" * pad + _U32.pack(len(text) + 1) + text + b"\0")
    return offset + pad + 4 + len(text) + 1


def _prefix(
    sec: int, nanosec: int, frame_id: bytes, height: int, width: int, encoding: bytes, step: int
) -> bytes:
    """Everything before the pixel bytes, including data's length field (see module table)."""
    parts = [_ENCAPSULATION, _STAMP.pack(sec, nanosec)]
    off = _string(parts, 8, frame_id)
    pad = _pad(off)
    parts.append(b"\0" * pad + _PAIR.pack(height, width))
    off = _string(parts, off + pad + 8, encoding)
    parts.append(b"\1" if not _LITTLE else b"\0")  # is_bigendian of host-order data
    off += 1
    pad = _pad(off)
    parts.append(b"\0" * pad + _PAIR.pack(step, height * step))
    return b"".join(parts)


def image_cdr(array: np.ndarray, encoding: str, header: Any) -> bytes:
    """The serialized ``sensor_msgs/Image`` that ``conversions.array_to_image_msg(array,
    encoding, header)`` would be, ready for ``Publisher.publish`` (one copy of the pixels).

    ``header`` is any object with ``stamp.sec``, ``stamp.nanosec`` and ``frame_id`` (rclpy or
    rosbags). Same checks and errors as ``array_to_image_msg`` (``encodings.encode_raw``:
    ImageEncodeError for a shape/dtype that does not fit the encoding); a stamp outside
    int32/uint32 raises ValueError as rclpy's field checks would.
    """
    if array.nbytes > _MAX_U32:  # before encode_raw, which would copy it (rows have no padding)
        raise ValueError(
            f"image of shape {array.shape} is {array.nbytes} bytes; a sensor_msgs/Image "
            f"carries at most {_MAX_U32} (uint32 length)"
        )
    step, data = encodings.encode_raw(array, encoding)
    try:
        prefix = _prefix(
            int(header.stamp.sec),
            int(header.stamp.nanosec),
            _frame_id_bytes(header.frame_id),
            int(array.shape[0]),
            int(array.shape[1]),
            encoding.encode("ascii"),
            step,
        )
    except struct.error as exc:
        raise ValueError(f"header stamp does not fit builtin_interfaces/Time: {exc}") from None
    return b"".join((prefix, data))


def _frame_id_bytes(frame_id: Any) -> bytes:
    """UTF-8 of ``frame_id`` up to its first NUL: rclpy hands the string to C as a
    NUL-terminated ``char *``, so that is what its serialization (and every subscriber) gets."""
    return str(frame_id).encode("utf-8").split(b"\0", 1)[0]


def padding_offsets(frame_id: str, encoding: str) -> list[int]:
    """Byte offsets (in ``image_cdr``'s output) of the alignment padding, whose value CDR leaves
    unspecified: what a byte-for-byte comparison with another serializer must skip."""
    out: list[int] = []
    off = 8 + 4 + len(_frame_id_bytes(frame_id)) + 1
    pad = _pad(off)
    out += range(4 + off, 4 + off + pad)
    off += pad + 8 + 4 + len(encoding) + 1 + 1  # height, width, encoding, is_bigendian
    pad = _pad(off)
    out += range(4 + off, 4 + off + pad)
    return out
