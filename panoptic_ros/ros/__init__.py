"""The rclpy shell: lifecycle node, parameters, message conversions, QoS and the Fast DDS profile."""
