"""Launch one panoptic_node for one camera.

    ros2 launch panoptic_ros panoptic.launch.py image:=/camera/image_raw
    ros2 launch panoptic_ros panoptic.launch.py image:=/camera/image_raw/compressed backend:=tensorrt namespace:=seg

Outputs appear in ``namespace`` (semantic, instance, panoptic, overlay, detections, label_info;
/diagnostics). Parameters: config/panoptic.yaml (override with params_file:=...).
The node gets the Fast DDS profile config/fastdds_large_frames.xml (16 MiB shared-memory segment,
so camera frames > 512 KiB survive best effort) unless the environment names one already;
dds_profile:=none keeps Fast DDS defaults. Give the camera driver the same profile.
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
                {"backend": LaunchConfiguration("backend"), "model": LaunchConfiguration("model")},
            ],
            remappings=[("image", LaunchConfiguration("image"))],
            additional_env=dds_profile.launch_env(profile),
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    share = get_package_share_directory("panoptic_ros")
    args = [
        DeclareLaunchArgument(
            "image",
            default_value="/camera/image_raw",
            description="Input image topic (sensor_msgs/Image; a topic ending in /compressed "
            "is read as sensor_msgs/CompressedImage).",
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
            "model",
            default_value="default",
            description="Model directory, 'default', or an .onnx file.",
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
