"""Subcommands of ``panoptic-ros`` (see cli.py for the module contract)."""
