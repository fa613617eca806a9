"""What every launch file of this package shares: the common launch arguments and the node.

Why a module: launch/panoptic.launch.py and launch/multi_camera.launch.py differ only in their
camera arguments, parameters and remappings; the params file, backend, namespace and Fast DDS
profile arguments and the way the node gets its profile (dds_profile.launch_env) live here once.
The ``launch`` / ``launch_ros`` imports stay inside the functions: importing this module needs no
launch system.
"""

from __future__ import annotations

import os
from typing import Any

from panoptic_ros.ros import dds_profile


def common_arguments(share: str) -> list[Any]:
    """``params_file``, ``backend``, ``precision``, ``namespace`` and ``dds_profile`` (``share``:
    the package's share directory, where config/ lies), in this order, after a launch file's own
    arguments. ``precision`` is declared because launch silently ignores an undeclared
    ``name:=value``: ``precision:=int8`` would have run fp32 without a word."""
    from launch.actions import DeclareLaunchArgument

    return [
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, "config", "panoptic.yaml"),
            description="Node parameter file (keys under /** ros__parameters).",
        ),
        DeclareLaunchArgument(
            "backend",
            default_value="auto",
            description="Inference backend: auto | onnxruntime | torch | tensorrt.",
        ),
        DeclareLaunchArgument(
            "precision",
            default_value="",
            description="Inference precision: fp32 | fp16 (GPU backends) | int8 (onnxruntime, "
            "tensorrt: the model's QDQ graph); empty = the params file's value.",
        ),
        DeclareLaunchArgument(
            "namespace",
            default_value="panoptic",
            description="Namespace of the node and its output topics.",
        ),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=os.path.join(share, "config", dds_profile.PROFILE_FILE),
            description="Fast DDS profile file for the node: the shipped one has a 16 MiB "
            "shared-memory segment so frames > 512 KiB are not lost over best effort; "
            "dds_profile:=none = Fast DDS defaults (no profile). Ignored when "
            "FASTDDS_/FASTRTPS_DEFAULT_PROFILES_FILE is set already.",
        ),
    ]


def panoptic_node(
    context: Any, parameters: dict[str, Any], remappings: list[tuple[Any, Any]]
) -> Any:
    """The panoptic_node action: the ``params_file`` argument, then ``parameters`` (``backend``
    is added from its argument, ``precision`` too unless empty); ``namespace`` from its
    argument; the Fast DDS profile variable for the ``dds_profile`` argument
    (dds_profile.launch_env). Call it from an OpaqueFunction: the profile choice must be known
    (``context``) to pick the variable's name."""
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    profile = LaunchConfiguration("dds_profile").perform(context)
    precision = LaunchConfiguration("precision").perform(context)
    chosen = {"precision": precision} if precision else {}  # '' keeps the params file's value
    return Node(
        package="panoptic_ros",
        executable="panoptic_node",
        name="panoptic_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {**parameters, "backend": LaunchConfiguration("backend"), **chosen},
        ],
        remappings=remappings,
        additional_env=dds_profile.launch_env(profile),
        output="screen",
        emulate_tty=True,
    )
