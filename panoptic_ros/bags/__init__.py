"""rosbag2 / ROS 1 bag reading and writing."""
