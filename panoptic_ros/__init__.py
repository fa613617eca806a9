"""panoptic_ros: real-time panoptic segmentation for ROS 2.

Only ``ros/``, ``bags/`` and ``bench/`` import ROS message types; everything
else is plain Python + numpy so it can be tested and benchmarked without ROS.
"""

__version__ = "0.1.0"
