"""Panoptic quality (panopticapi rules) and the COCO panoptic format."""
