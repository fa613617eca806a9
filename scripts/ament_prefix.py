#!/usr/bin/env python3
"""Make a directory an ament prefix for panoptic_ros, as ``colcon build --symlink-install`` would.

    python scripts/ament_prefix.py PREFIX [--bin DIR]

Why: ``ros2 launch`` and launch_ros find a package only through the ament index
(``AMENT_PREFIX_PATH``): ``get_package_share_directory('panoptic_ros')`` needs
``PREFIX/share/ament_index/resource_index/packages/panoptic_ros`` and ``PREFIX/share/panoptic_ros/``,
and ``Node(package='panoptic_ros', executable='panoptic_node')`` runs
``PREFIX/lib/panoptic_ros/panoptic_node``. The editable pip install in scripts/setup writes none of
that, so scripts/setup runs this for the venv (which its vision_msgs .pth puts on
``AMENT_PREFIX_PATH``), and the launch tests run it for a prefix of their own.

What it creates (symlinks, so edits in the checkout show at once; stdlib only):
    share/ament_index/resource_index/packages/panoptic_ros   (empty marker file)
    share/panoptic_ros/{package.xml,launch,config,models}     -> the checkout
    lib/panoptic_ros/{panoptic_node,panoptic-ros}             -> the console scripts in --bin
Idempotent: a second run changes nothing; a wrong link is replaced. Prints what it changed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PACKAGE = "panoptic_ros"
ROOT = Path(__file__).resolve().parent.parent
SHARED = ("package.xml", "launch", "config", "models")
EXECUTABLES = ("panoptic_node", "panoptic-ros")


def _link(path: Path, target: Path, changed: list[str]) -> None:
    if path.is_symlink() and os.readlink(path) == str(target):
        return
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        raise FileExistsError(
            f"{path} exists and is not a link; remove it to let it point at {target}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    changed.append(f"{path} -> {target}")


def make_prefix(prefix: Path, bin_dir: Path, root: Path = ROOT) -> list[str]:
    """Make ``prefix`` an ament prefix for the checkout ``root`` with the console scripts of
    ``bin_dir``; returns the paths it created or changed (empty: already complete)."""
    prefix, bin_dir, root = Path(prefix).absolute(), Path(bin_dir).absolute(), Path(root).resolve()
    changed: list[str] = []
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
    if not marker.is_file():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("")
        changed.append(str(marker))
    for name in SHARED:
        _link(prefix / "share" / PACKAGE / name, root / name, changed)
    for exe in EXECUTABLES:
        script = bin_dir / exe
        if not script.is_file():
            raise FileNotFoundError(f"console script {script} missing (pip install -e {root})")
        _link(prefix / "lib" / PACKAGE / exe, script, changed)
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("prefix", type=Path, help="the prefix (e.g. the venv)")
    p.add_argument(
        "--bin",
        type=Path,
        default=Path(sys.executable).parent,
        help="directory with the console scripts (default: this interpreter's bin/)",
    )
    args = p.parse_args(argv)
    try:
        changed = make_prefix(args.prefix, args.bin)
    except OSError as exc:
        print(f"ament_prefix: {exc}", file=sys.stderr)
        return 1
    for c in changed:
        print(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
