"""Synthetic camera bags for the demo and the tests: procedural street scenes
(``core/synthetic.py``) in any of rgb8 / bgr8 / rgba8 / mono8 / jpeg / png, written as a
real rosbag2 bag, with the ground truth handed back, not stored.

Raw images are built by the same encoder the node's outputs use
(``ros.conversions.array_to_image_msg`` over ``core.encodings.encode_raw``), so a synthetic
bag exercises the decoder against the project's one encoder, not a second copy of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from panoptic_ros.bags.messages import BagError
from panoptic_ros.bags.writer import BagWriter

#: Image encodings / compressed formats write_synthetic_bag can produce
SYNTHETIC_ENCODINGS = ("rgb8", "bgr8", "rgba8", "mono8", "jpeg", "png")


def image_message(
    rgb: np.ndarray,
    stamp: int,
    frame_id: str = "camera",
    encoding: str = "rgb8",
    *,
    step_padding: int = 0,
    jpeg_quality: int = 90,
):
    """An rclpy Image (rgb8/bgr8/rgba8/mono8, optional row padding) or CompressedImage
    (jpeg/png) holding the RGB array ``rgb`` with header stamp ``stamp`` (ns)."""
    import cv2
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header

    from panoptic_ros.ros.conversions import array_to_image_msg, ns_to_stamp

    header = Header(stamp=ns_to_stamp(stamp), frame_id=frame_id)
    if encoding in ("jpeg", "png"):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        params = (
            [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
            if encoding == "jpeg"
            else [cv2.IMWRITE_PNG_COMPRESSION, 1]
        )
        ok, buf = cv2.imencode("." + ("jpg" if encoding == "jpeg" else "png"), bgr, params)
        if not ok:
            raise BagError(f"cv2 could not encode {encoding}")
        return CompressedImage(
            header=header, format=f"rgb8; {encoding} compressed bgr8", data=buf.tobytes()
        )
    convert = {
        "rgb8": None,
        "bgr8": cv2.COLOR_RGB2BGR,
        "rgba8": cv2.COLOR_RGB2RGBA,
        "mono8": cv2.COLOR_RGB2GRAY,
    }
    if encoding not in convert:
        raise BagError(
            f"write_synthetic_bag cannot produce encoding {encoding!r}; choose from {SYNTHETIC_ENCODINGS}"
        )
    code = convert[encoding]
    msg = array_to_image_msg(rgb if code is None else cv2.cvtColor(rgb, code), encoding, header)
    if step_padding:  # rows longer than the pixels, as some drivers send them
        rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
        msg.data = np.pad(rows, ((0, 0), (0, step_padding))).tobytes()
        msg.step += step_padding
    return msg


@dataclass
class SyntheticFrame:
    """Ground truth for one frame of a synthetic bag (kept aside, not in the bag)."""

    stamp: int
    seed: int
    panoptic: np.ndarray | None = None
    image: np.ndarray | None = None


@dataclass
class SyntheticBag:
    path: Path
    topic: str
    frames: list[SyntheticFrame] = field(default_factory=list)


def write_synthetic_bag(
    path: str | Path,
    *,
    frames: int = 30,
    height: int = 480,
    width: int = 640,
    topic: str = "/camera/image_raw",
    encoding: str = "rgb8",
    storage: str = "mcap",
    fps: float = 10.0,
    start: int = 1_700_000_000_000_000_000,
    seed_start: int = 0,
    frame_id: str = "camera",
    latency_ns: int = 2_000_000,
    step_padding: int = 0,
    keep_images: bool = False,
    keep_panoptic: bool = True,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SyntheticBag:
    """Write a camera bag of procedural scenes (validation seeds, so never training data).

    Header stamps are ``start + i / fps``; log (receive) times trail them by ``latency_ns``
    like a real recording. Returns the ground truth per frame (panoptic maps, optionally the
    RGB images).
    """
    from panoptic_ros.core.synthetic import generate_scene, validation_seeds

    out = SyntheticBag(Path(path), topic)
    period = int(round(1e9 / fps))
    with BagWriter(path, storage, overwrite=overwrite) as writer:
        for i, seed in enumerate(validation_seeds(frames, start=seed_start)):
            scene = generate_scene(seed, height, width)
            t = start + i * period
            msg = image_message(scene.image, t, frame_id, encoding, step_padding=step_padding)
            writer.write_msg(topic, msg, t + latency_ns, qos="sensor")
            out.frames.append(
                SyntheticFrame(
                    t,
                    seed,
                    scene.panoptic if keep_panoptic else None,
                    scene.image if keep_images else None,
                )
            )
            if progress:
                progress(i + 1)
    return out
