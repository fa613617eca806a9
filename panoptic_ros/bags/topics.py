"""Which image topics are camera images, and where a topic's outputs go.

process-bag segments camera images only: a depth topic (``16UC1`` / ``32FC1``), a mask or a
label image recorded next to the camera would otherwise be decoded as if it were a picture
(16-bit depth scaled to 8 bits) and produce confident nonsense. The decision is by encoding,
as sensor_msgs/image_encodings names them: colour and mono encodings (``rgb*``, ``bgr*``,
``mono*``, Bayer, YUV) and 3/4-channel 8-bit generic (``8UC3``/``8UC4``, what OpenCV
drivers publish) are camera images; single-channel generic and floating point ones
(``8UC1``, ``16UC1``, ``32FC1``, ...) are not. A CompressedImage is a camera image unless it
is ``compressedDepth`` or image_transport's format string names a non-camera source encoding
(``"16UC1; png compressed"``).
"""

from __future__ import annotations

_CAMERA_PREFIXES = ("rgb", "bgr", "mono", "bayer_", "yuv", "uyvy", "yuyv", "nv12", "nv21")
_CAMERA_GENERIC = ("8uc3", "8uc4")


def camera_encoding(encoding: str, *, compressed: bool = False) -> bool:
    """True when an Image ``encoding`` (or a CompressedImage ``format``) is a camera picture."""
    e = encoding.strip().lower()
    if compressed:
        if "compresseddepth" in e.replace(" ", ""):
            return False
        if ";" not in e:  # "jpeg", "png": no source encoding given
            return True
        e = e.split(";", 1)[
            0
        ].strip()  # image_transport: "<source encoding>; <codec> compressed ..."
    return e.startswith(_CAMERA_PREFIXES) or e in _CAMERA_GENERIC


def output_namespace(image_topic: str) -> str:
    """The namespace the node's outputs live in for an input topic: its parent, after
    dropping an image_transport suffix (``/cam/image_raw/compressed`` -> ``/cam``)."""
    t = image_topic.rstrip("/")
    if t.endswith("/compressed"):
        t = t[: -len("/compressed")]
    parent = t.rsplit("/", 1)[0]
    return parent if parent else ""
