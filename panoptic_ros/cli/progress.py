"""The progress bar every long-running command shows on stderr (demo, replay, process-bag)."""

from __future__ import annotations

import os
import sys


def progress_bar(total: int | None, desc: str, unit: str = "frame", disable: bool | None = None):
    """tqdm on stderr (disabled when stderr is not a terminal unless PANOPTIC_PROGRESS=1)."""
    from tqdm import tqdm

    if disable is None:
        disable = not (sys.stderr.isatty() or os.environ.get("PANOPTIC_PROGRESS") == "1")
    return tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable, dynamic_ncols=True
    )
