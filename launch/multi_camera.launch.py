"""Example: one panoptic_node serving two cameras, batched into one inference call when the
backend allows it.

    ros2 launch panoptic_ros multi_camera.launch.py front:=/front/image_raw rear:=/rear/image_raw

Outputs: <namespace>/front/{semantic,instance,panoptic,overlay,detections,label_info} and the same
under rear/. dds_profile:=none keeps Fast DDS defaults (see panoptic.launch.py).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from panoptic_ros.ros import dds_profile


def _node(context):
    """The node, with the profile variable for the dds_profile argument (dds_profile.launch_env)."""
    profile = LaunchConfiguration("dds_profile").perform(context)
    return [
        Node(
            package="panoptic_ros",
            executable="panoptic_node",
            name="panoptic_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[
                LaunchConfiguration("params_file"),
                {"cameras": ["front", "rear"], "backend": LaunchConfiguration("backend")},
            ],
            remappings=[
                ("front/image", LaunchConfiguration("front")),
                ("rear/image", LaunchConfiguration("rear")),
            ],
            additional_env=dds_profile.launch_env(profile),
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    share = get_package_share_directory("panoptic_ros")
    args = [
        DeclareLaunchArgument(
            "front",
            default_value="/front_camera/image_raw",
            description="Image topic of the front camera.",
        ),
        DeclareLaunchArgument(
            "rear",
            default_value="/rear_camera/image_raw",
            description="Image topic of the rear camera.",
        ),
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
            "namespace",
            default_value="panoptic",
            description="Namespace of the node and its output topics.",
        ),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=os.path.join(share, "config", "fastdds_large_frames.xml"),
            description="Fast DDS profile file for the node: the shipped one has a 16 MiB "
            "shared-memory segment so frames > 512 KiB are not lost over best effort; "
            "dds_profile:=none = Fast DDS defaults (no profile). Ignored when "
            "FASTDDS_/FASTRTPS_DEFAULT_PROFILES_FILE is set already.",
        ),
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_node)])
