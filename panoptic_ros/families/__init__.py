"""Model families and the model store: what a model directory or ONNX file is, and how its outputs
decode; this project's own network (panoptic_net) and its torch -> ONNX exporter (panoptic_export)."""
