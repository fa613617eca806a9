"""Model families and the model store: what a model directory or ONNX file is, and how its outputs decode."""
