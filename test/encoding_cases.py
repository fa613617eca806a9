"""Shared by test_encodings.py and test_encodings_hypothesis.py (imported like ``pq_random``): the rosbags
message types used as the independent reference, and the table of supported raw encodings."""

from __future__ import annotations

import numpy as np
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_KILTED)
RbImage = TS.types["sensor_msgs/msg/Image"]
RbCompressed = TS.types["sensor_msgs/msg/CompressedImage"]
RbHeader = TS.types["std_msgs/msg/Header"]
RbTime = TS.types["builtin_interfaces/msg/Time"]

# encoding -> (dtype, channels, the encoding rosbags-image should decode the same bytes as,
#              tolerance vs rosbags: it truncates 16 -> 8 bit, we round like cv_bridge)
CASES = {
    "rgb8": (np.uint8, 3, "rgb8", 0),
    "bgr8": (np.uint8, 3, "bgr8", 0),
    "rgba8": (np.uint8, 4, "rgba8", 0),
    "bgra8": (np.uint8, 4, "bgra8", 0),
    "mono8": (np.uint8, 1, "mono8", 0),
    "8UC1": (np.uint8, 1, "mono8", 0),
    "8UC3": (np.uint8, 3, "bgr8", 0),  # cv_bridge reads 8UC3 as BGR
    "8UC4": (np.uint8, 4, "bgra8", 0),
    "mono16": (np.uint16, 1, "mono16", 1),
    "16UC1": (np.uint16, 1, "mono16", 1),
    "rgb16": (np.uint16, 3, "rgb16", 1),
    "bgr16": (np.uint16, 3, "bgr16", 1),
    "rgba16": (np.uint16, 4, "rgba16", 1),
    "bgra16": (np.uint16, 4, "bgra16", 1),
    "yuv422": (np.uint8, 2, "yuv422", 0),
    "uyvy": (np.uint8, 2, "uyvy", 0),
    "yuv422_yuy2": (np.uint8, 2, "yuv422_yuy2", 0),
    "yuyv": (np.uint8, 2, "yuyv", 0),
    "bayer_rggb8": (np.uint8, 1, "bayer_rggb8", 0),
    "bayer_bggr8": (np.uint8, 1, "bayer_bggr8", 0),
    "bayer_gbrg8": (np.uint8, 1, "bayer_gbrg8", 0),
    "bayer_grbg8": (np.uint8, 1, "bayer_grbg8", 0),
    "bayer_rggb16": (np.uint16, 1, "bayer_rggb16", 1),
    "bayer_bggr16": (np.uint16, 1, "bayer_bggr16", 1),
    "bayer_gbrg16": (np.uint16, 1, "bayer_gbrg16", 1),
    "bayer_grbg16": (np.uint16, 1, "bayer_grbg16", 1),
}
