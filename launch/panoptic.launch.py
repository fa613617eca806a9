"""Launch one panoptic_node for one camera.

    ros2 launch panoptic_ros panoptic.launch.py image:=/camera/image_raw
    ros2 launch panoptic_ros panoptic.launch.py image:=/camera/image_raw/compressed backend:=tensorrt namespace:=seg

Outputs appear in ``namespace`` (semantic, instance, panoptic, overlay, detections, label_info;
/diagnostics). Parameters: config/panoptic.yaml (override with params_file:=...).
The node gets config/fastdds_large_frames.xml (16 MiB shared-memory segment, so camera frames
> 512 KiB survive best effort) as its Fast DDS profile, under the variable the Fast DDS in use reads
(FASTRTPS_/FASTDDS_DEFAULT_PROFILES_FILE, see dds_profile.py), unless one is set already;
dds_profile:='' keeps Fast DDS defaults. Give the camera driver the same profile.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from panoptic_ros.ros import dds_profile


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
            description="Fast DDS profile file for the node (FASTRTPS_DEFAULT_PROFILES_FILE for Fast "
            "DDS 2.x / Jazzy, FASTDDS_DEFAULT_PROFILES_FILE for 3.x / Kilted: dds_profile.py): the "
            "shipped one has a 16 MiB shared-memory segment so frames > 512 KiB are "
            "not lost over best effort; '' = Fast DDS defaults. Ignored when "
            "FASTDDS_/FASTRTPS_DEFAULT_PROFILES_FILE is set already.",
        ),
    ]
    node = Node(
        package="panoptic_ros",
        executable="panoptic_node",
        name="panoptic_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {"backend": LaunchConfiguration("backend"), "model": LaunchConfiguration("model")},
        ],
        remappings=[("image", LaunchConfiguration("image"))],
        additional_env=dds_profile.launch_env(LaunchConfiguration("dds_profile")),
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription(args + [node])
