"""Example: one panoptic_node serving two cameras, batched into one inference call when the
backend allows it.

    ros2 launch panoptic_ros multi_camera.launch.py front:=/front/image_raw rear:=/rear/image_raw

Outputs: <namespace>/front/{semantic,instance,panoptic,overlay,detections,label_info} and the same
under rear/. dds_profile:=none keeps Fast DDS defaults (see panoptic.launch.py).
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
            {"cameras": ["front", "rear"]},
            [
                ("front/image", LaunchConfiguration("front")),
                ("rear/image", LaunchConfiguration("rear")),
            ],
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
    ]
    return LaunchDescription(
        args + launch_parts.common_arguments(share) + [OpaqueFunction(function=_node)]
    )
