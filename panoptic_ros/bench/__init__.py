"""Benchmarking: stage timers and the DDS load generator."""
