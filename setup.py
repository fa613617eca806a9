"""ament_python package definition; also installs with plain pip (see scripts/setup)."""

from glob import glob

from setuptools import find_packages, setup

package_name = "panoptic_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        (
            "share/" + package_name + "/config",
            glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml"),
        ),
        ("share/" + package_name + "/config/taxonomies", glob("config/taxonomies/*.yaml")),
        ("share/" + package_name + "/models/default", glob("models/default/*")),
    ],
    install_requires=["setuptools", "numpy", "pyyaml"],
    # torch: the torch backend, training, export and TensorRT's CUDA buffers; the ONNX Runtime path
    # runs without it (models/default ships its ONNX export)
    extras_require={"torch": ["torch", "safetensors", "onnxscript"]},
    zip_safe=True,
    maintainer="panoptic_ros developers",
    maintainer_email="panoptic-ros@example.com",
    description="Real-time panoptic segmentation node for ROS 2 (TensorRT, ONNX Runtime, torch backends).",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "panoptic_node = panoptic_ros.ros.node_main:main",
            "panoptic-ros = panoptic_ros.cli:main",
        ],
    },
)
