"""Training-time code (torch): the network, trainer, synthetic scenes, ONNX export."""
