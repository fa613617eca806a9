"""panoptic_ros: real-time panoptic segmentation for ROS 2.

One subpackage per layer (docs/ARCHITECTURE.md): core < backends < families < evaluation <
training < ros < bags < bench < cli. Only ros/, bags/, bench/ and cli/ import ROS; everything
else is plain Python + numpy so it can be tested and benchmarked without ROS.
"""

__version__ = "0.1.0"
