"""Where the package's shipped files live: the source tree when run from a checkout (or an
editable install), else ament's ``share/panoptic_ros/`` (colcon install).

One lookup for every module that needs a shipped file (config/, models/), so a checkout and an
installed workspace always agree on which copy wins: the source tree's, when both exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def candidates(relpath: str) -> list[Path]:
    """Where ``relpath`` (e.g. ``config/panoptic.yaml``) is looked for, in order."""
    found = [PACKAGE_DIR.parent / relpath]
    try:
        from ament_index_python.packages import get_package_share_directory

        found.append(Path(get_package_share_directory("panoptic_ros")) / relpath)
    except Exception:  # ament index absent or package not installed through it: source tree only
        pass
    return found


def find(relpath: str, present: Callable[[Path], bool] = Path.is_file) -> Path:
    """The first candidate of ``relpath`` for which ``present`` holds; FileNotFoundError listing
    where it looked."""
    places = candidates(relpath)
    for c in places:
        if present(c):
            return c
    raise FileNotFoundError(f"{relpath} not found (looked in {', '.join(map(str, places))})")


def config_file(name: str) -> Path:
    """The shipped ``config/<name>``."""
    return find(f"config/{name}")
