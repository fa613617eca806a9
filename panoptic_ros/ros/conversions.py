"""ROS message shell: sensor_msgs Image/CompressedImage <-> ndarray, results -> output messages.

The byte-level work (every encoding, every check) lives in ``encodings.py`` and the colouring
in ``visualize.py``; this module only reads and fills message fields. It accepts rclpy
messages and, for the input side, any object with the same fields (rosbags message objects).

Output messages follow the topic contract (docs/node.md "Topics"):

=============  ======================================================================
semantic       Image mono8 (16UC1 when the taxonomy has > 254 classes); 255 / 65535 unlabeled
instance       Image 16UC1; 0 = stuff / none, k = Instance.id = Detection2D.id
panoptic       Image 32SC1; class_id * label_divisor + instance_id, -1 void
panoptic_rgb   Image rgb8; R + 256 G + 256^2 B = panoptic + 1 (0 void), see visualize.py
overlay        Image rgb8 colour blend
detections     vision_msgs/Detection2DArray, one Detection2D per thing instance
=============  ======================================================================

Every message gets its own copy of the input header (stamp and frame_id), so mutating the
input header (or one output's header) afterwards changes nothing else.
"""

from __future__ import annotations

import array
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from panoptic_ros.core import encodings
from panoptic_ros.core.encodings import ImageDecodeError, ImageEncodeError
from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.core.types import UNLABELED, PanopticResult
from panoptic_ros.core.visualize import overlay as make_overlay
from panoptic_ros.core.visualize import panoptic_to_rgb
from panoptic_ros.ros.cdr_image import image_cdr

__all__ = [
    "ImageDecodeError",
    "ImageEncodeError",
    "LABEL_OUTPUTS",
    "OutputMessages",
    "array_to_image_msg",
    "copy_header",
    "image_msg_to_array",
    "image_to_array",
    "label_info_msg",
    "image_cdr",
    "result_to_messages",
]

UNLABELED16 = 65535


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (rclpy or rosbags) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def copy_header(header: Any) -> Header:
    """A new std_msgs/Header equal to ``header`` (rclpy or rosbags object)."""
    return Header(
        stamp=Time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec)),
        frame_id=str(header.frame_id),
    )


def image_msg_to_array(msg: Any, *, max_pixels: int = encodings.MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/Image or CompressedImage (rclpy or rosbags).

    Raw images: all encodings of ``encodings.SUPPORTED_ENCODINGS``, step padding honoured;
    an rgb8 result is a read-only view of ``msg.data`` (no copy; it keeps the buffer alive).
    Compressed: JPEG / PNG. ``max_pixels`` caps width * height (see encodings.py).
    Raises ImageDecodeError naming the fault.
    """
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return encodings.decode_compressed(msg.format, msg.data, max_pixels=max_pixels)
    try:
        fields = (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
    except AttributeError as exc:
        raise ImageDecodeError(
            f"not an Image or CompressedImage message: {type(msg).__name__}", "data_type"
        ) from exc
    return encodings.decode_raw(*fields, max_pixels=max_pixels)


#: the name docs/ARCHITECTURE.md uses
image_to_array = image_msg_to_array


def array_to_image_msg(array_: np.ndarray, encoding: str, header: Any) -> Image:
    """sensor_msgs/Image of ``array_`` (``encodings.SUPPORTED_OUTPUT_ENCODINGS``; exact dtype).

    The header is copied. Raises ImageEncodeError for a shape/dtype that does not fit.
    """
    step, data = encodings.encode_raw(array_, encoding)
    buf = array.array("B")
    buf.frombytes(data)  # the one copy: array.array is the message's native storage
    msg = _new_image()
    msg.header = copy_header(header)
    msg.height = int(array_.shape[0])
    msg.width = int(array_.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = encodings.is_bigendian_host()
    msg.step = step
    msg.data = buf
    return msg


def _new_image() -> Image:
    """An Image whose ``data`` setter keeps an array.array as is.

    With field checks off (the default since Jazzy, ROS_PYTHON_CHECK_FIELDS unset) the
    generated setter copies every assigned sequence into a new array.array; with checks on
    it stores an array.array('B') directly (no per-byte checks for arrays). Distros before
    the ``check_fields`` keyword always check, hence the fallback.
    """
    try:
        return Image(check_fields=True)
    except (AssertionError, TypeError):  # pragma: no cover - older rosidl_generator_py
        return Image()


#: the outputs ``result_to_messages`` builds by default (overlay and panoptic_rgb are opt-in)
LABEL_OUTPUTS = ("semantic", "instance", "panoptic", "detections")


@dataclass
class OutputMessages:
    """Messages for one frame; ``None`` where not requested. Images are ``bytes`` (serialized
    sensor_msgs/Image, see cdr_image.py) when ``result_to_messages`` was asked for
    ``serialized=True``; ``Publisher.publish`` takes either form."""

    semantic: Image | bytes | None
    instance: Image | bytes | None
    panoptic: Image | bytes | None
    detections: Any  # vision_msgs/Detection2DArray, or None
    panoptic_rgb: Image | bytes | None = None
    overlay: Image | bytes | None = None


def _semantic_image(semantic: np.ndarray, taxonomy: Taxonomy) -> tuple[np.ndarray, str]:
    """The semantic map in the contract's form: mono8 (255 unlabeled) or 16UC1 (65535) if > 254 classes."""
    wide = taxonomy.num_classes > 254
    if wide:
        if semantic.dtype == np.uint16:
            return semantic, "16UC1"
        if semantic.dtype == np.uint8:
            out = semantic.astype(np.uint16)
            out[semantic == UNLABELED] = UNLABELED16
            return out, "16UC1"
    else:
        if semantic.dtype == np.uint8:
            return semantic, "mono8"
        if semantic.dtype == np.uint16:
            unl = semantic == UNLABELED16
            if np.any(semantic[~unl] >= UNLABELED):
                raise ValueError("semantic holds values >= 255 but the taxonomy has <= 254 classes")
            out = semantic.astype(np.uint8)
            out[unl] = UNLABELED
            return out, "mono8"
    raise ValueError(f"semantic must be uint8 or uint16, got {semantic.dtype}")


def _as_dtype(a: np.ndarray, dtype: type, name: str) -> np.ndarray:
    if a.dtype == dtype:
        return a
    info = np.iinfo(dtype)
    if a.size and (a.min() < info.min or a.max() > info.max):
        raise ValueError(f"{name} values {a.min()}..{a.max()} do not fit {np.dtype(dtype)}")
    return a.astype(dtype)


def _vision_msgs():
    try:
        from vision_msgs import msg as vm
    except ImportError as exc:  # pragma: no cover - environment problem
        raise ImportError(
            "vision_msgs is not importable: install ros-<distro>-vision-msgs or build interfaces/ "
            "(scripts/setup) and source its install/setup.bash"
        ) from exc
    return vm


def detections_msg(result: PanopticResult, header: Any) -> Any:
    """vision_msgs/Detection2DArray: one Detection2D per Instance of ``result``.

    id = str(instance id) (the pixel value in the instance image: with tracking the track id,
    stable over frames), results[0].hypothesis class_id = str(class id) and score;
    results[0].pose.covariance[0] = track age (frames since the track began, 0 on its first) and
    [1] = hits (frames it was detected in; 0 = untracked) -- a 2D detection has no pose, so its otherwise
    all-zero PoseWithCovariance carries them without a custom message (README "Track ids");
    bbox centre ((x0 + x1) / 2, (y0 + y1) / 2) and size
    (x1 - x0, y1 - y0) in input pixels, from Instance.bbox (x1, y1 exclusive), so
    ``x0 = center.x - size_x / 2`` recovers the box exactly. Every Detection2D carries a copy
    of the input header.
    """
    vm = _vision_msgs()
    out = vm.Detection2DArray()
    out.header = copy_header(header)
    dets = []
    for inst in result.instances:
        x0, y0, x1, y1 = (int(v) for v in inst.bbox)
        det = vm.Detection2D()
        det.header = copy_header(header)
        det.id = str(int(inst.id))
        hyp = vm.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(int(inst.class_id))
        hyp.hypothesis.score = float(inst.score)
        hyp.pose.covariance[0] = float(getattr(inst, "age", 0))
        hyp.pose.covariance[1] = float(getattr(inst, "hits", 0))
        det.results = [hyp]
        det.bbox.center.position.x = (x0 + x1) / 2.0
        det.bbox.center.position.y = (y0 + y1) / 2.0
        det.bbox.center.theta = 0.0
        det.bbox.size_x = float(x1 - x0)
        det.bbox.size_y = float(y1 - y0)
        dets.append(det)
    out.detections = dets
    return out


def result_to_messages(
    result: PanopticResult,
    header: Any,
    taxonomy: Taxonomy,
    *,
    image_rgb: np.ndarray | None = None,
    want_overlay: bool = False,
    want_panoptic_rgb: bool = False,
    overlay_alpha: float = 0.5,
    outputs: Collection[str] = LABEL_OUTPUTS,
    serialized: bool = False,
) -> OutputMessages:
    """Output messages of one frame (see the module docstring for the contract).

    ``outputs``: which of semantic, instance, panoptic, detections to build (default all four);
    the others are ``None`` in the result. The node passes only those with subscribers: a VGA
    frame's label images are 2.1 MB, and building + serialising unwanted ones was a quarter of
    the per-frame overhead. Whatever is built comes from the one ``result``, so the ids in the
    instance image always match the Detection2D ids of the same frame (same header stamp).
    ``image_rgb`` (the decoded input frame, (H, W, 3) uint8) is needed only for the overlay;
    ``want_overlay`` without it raises ValueError. Maps must share the input resolution.
    Each image message is one copy of its array (``array_to_image_msg``; no copy at all for the
    dtype conversions when the result already has the contract's dtypes, as Segmenter's does).
    ``serialized=True``: every image is its serialized form instead (``bytes`` from
    ``cdr_image.image_cdr``, the same bytes rclpy would serialize the message to, one copy of
    the pixels and no Python message); what the node publishes. Detections stay a message.
    """
    to_image = image_cdr if serialized else array_to_image_msg
    unknown = set(outputs) - set(LABEL_OUTPUTS)
    if unknown:
        raise ValueError(f"unknown output(s) {sorted(unknown)}; known: {list(LABEL_OUTPUTS)}")
    h, w = result.semantic.shape[:2]
    for name in ("instance", "panoptic"):
        if getattr(result, name).shape != (h, w):
            raise ValueError(
                f"result.{name} shape {getattr(result, name).shape} != semantic shape {(h, w)}"
            )
    msgs = OutputMessages(semantic=None, instance=None, panoptic=None, detections=None)
    if "semantic" in outputs:
        sem, sem_enc = _semantic_image(result.semantic, taxonomy)
        msgs.semantic = to_image(sem, sem_enc, header)
    if "instance" in outputs:
        msgs.instance = to_image(_as_dtype(result.instance, np.uint16, "instance"), "16UC1", header)
    if "panoptic" in outputs or want_panoptic_rgb:
        panoptic = _as_dtype(result.panoptic, np.int32, "panoptic")
        if "panoptic" in outputs:
            msgs.panoptic = to_image(panoptic, "32SC1", header)
    if "detections" in outputs:
        msgs.detections = detections_msg(result, header)
    if want_panoptic_rgb:
        msgs.panoptic_rgb = to_image(panoptic_to_rgb(panoptic), "rgb8", header)
    if want_overlay:
        if image_rgb is None:
            raise ValueError("want_overlay needs image_rgb (the decoded input frame)")
        if image_rgb.shape[:2] != (h, w):
            raise ValueError(f"image_rgb shape {image_rgb.shape[:2]} != result shape {(h, w)}")
        ov = make_overlay(
            image_rgb, result.semantic, result.instance, taxonomy, alpha=overlay_alpha
        )
        msgs.overlay = to_image(ov, "rgb8", header)
    return msgs


def label_info_msg(taxonomy: Taxonomy, header: Any, threshold: float = 0.0) -> Any:
    """vision_msgs/LabelInfo: class_map = [VisionClass(class_id, class_name)] in id order.

    ``threshold`` is the detection score threshold the node applies (LabelInfo semantics).
    """
    vm = _vision_msgs()
    msg = vm.LabelInfo()
    msg.header = copy_header(header)
    msg.class_map = [
        vm.VisionClass(class_id=int(c.id), class_name=str(c.name)) for c in taxonomy.classes
    ]
    msg.threshold = float(threshold)
    return msg
