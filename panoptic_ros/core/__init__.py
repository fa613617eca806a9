"""ROS-free runtime: types, taxonomy, encodings, pre/post-processing, the Segmenter pipeline,
frame slots, stats and visualisation."""
