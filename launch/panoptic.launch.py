"""Launch one panoptic_node for one camera.

    ros2 launch panoptic_ros panoptic.launch.py image:=/camera/image_raw
    ros2 launch panoptic_ros panoptic.launch.py image:=/camera/image_raw/compressed backend:=tensorrt namespace:=seg

Outputs appear in ``namespace`` (semantic, instance, panoptic, overlay, detections, label_info;
/diagnostics). Parameters: config/panoptic.yaml (override with params_file:=...).
The node gets the Fast DDS profile config/fastdds_large_frames.xml (16 MiB shared-memory segment,
so camera frames > 512 KiB survive best effort) unless the environment names one already;
dds_profile:=none keeps Fast DDS defaults. Give the camera driver the same profile.
"""

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription
from panoptic_ros.ros import launch_parts


def _node(context):
    """The node (launch_parts.panoptic_node: params file, backend, namespace, DDS profile)."""
    return [
        launch_parts.panoptic_node(
            context,
            {"model": LaunchConfiguration("model")},
            [("image", LaunchConfiguration("image"))],
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
            "model",
            default_value="default",
            description="Model directory, 'default', or an .onnx file.",
        ),
    ]
    return LaunchDescription(
        args + launch_parts.common_arguments(share) + [OpaqueFunction(function=_node)]
    )
