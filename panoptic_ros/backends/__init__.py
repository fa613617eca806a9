"""Inference backends behind one small protocol (see base.Backend).

``create_backend(name, ...)`` is the only entry point the pipeline and the node use.
"""
