"""scripts/setup's ROS 2 distro choice (PANOPTIC_ROS_DISTRO) and CI running the suite on each distro.

One venv holds one distro (Jazzy and Kilted wheels install the same ``ros-X`` names), so setup
records the distro in the venv and refuses to install another one into it, saying what to do.
The refusals are checked against throw-away venvs made without pip (setup stops before any
install); the venv running this suite is checked against its own record.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup"
RCLPY_MAJOR = {"jazzy": 7, "kilted": 9}
FASTDDS_MAJOR = {"jazzy": 2, "kilted": 3}


def _bare_venv(path: Path) -> Path:
    py = shutil.which("python3.11")
    if py is None or any(shutil.which(t) is None for t in ("cmake", "make", "g++", "git")):
        pytest.skip("scripts/setup's system tools (python3.11, cmake, make, g++, git) not all here")
    subprocess.run([py, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    return path


def _setup(venv: Path, distro: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANOPTIC_", "PYTHON"))}
    env["PANOPTIC_VENV"] = str(venv)
    if distro is not None:
        env["PANOPTIC_ROS_DISTRO"] = distro
    return subprocess.run(
        ["bash", str(SETUP)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_unknown_distro_is_refused_before_anything_is_made(tmp_path):
    out = _setup(tmp_path / "v", "humble")
    assert out.returncode != 0
    assert (
        "PANOPTIC_ROS_DISTRO=humble: not a supported distro (supported: jazzy kilted)" in out.stderr
    )
    assert not (tmp_path / "v").exists()


def test_a_venv_of_one_distro_is_not_given_another(tmp_path):
    venv = _bare_venv(tmp_path / "v")
    (venv / ".panoptic-ros-distro").write_text("kilted\n")
    out = _setup(venv, "jazzy")
    assert out.returncode != 0
    msg = " ".join(out.stderr.split())
    assert f"{venv} holds ROS 2 kilted, not jazzy: one venv holds one distro" in msg, out.stderr
    assert f"PANOPTIC_ROS_DISTRO=jazzy PANOPTIC_VENV={venv}-jazzy" in msg  # a second venv
    assert f"rm -rf {venv} && PANOPTIC_ROS_DISTRO=jazzy" in msg  # or replace this one
    assert "python packages" not in out.stderr  # stopped before pip
    assert (venv / ".panoptic-ros-distro").read_text() == "kilted\n"


def test_a_venv_from_before_the_record_is_known_by_its_rclpy_wheel(tmp_path):
    venv = _bare_venv(tmp_path / "v")
    site = next((venv / "lib").glob("python3.*")) / "site-packages"
    info = site / "ros_rclpy-7.1.6.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ros-rclpy\nVersion: 7.1.6\n")
    out = _setup(venv, "kilted")
    assert out.returncode != 0
    assert "holds ROS 2 jazzy, not kilted" in out.stderr, out.stderr


def _installed_distro() -> str:
    try:
        major = int(md.version("ros-rclpy").split(".")[0])
    except md.PackageNotFoundError:
        pytest.skip("rclpy not from the PyPI wheels (a sourced ROS 2 installation)")
    distro = {v: k for k, v in RCLPY_MAJOR.items()}.get(major)
    if distro is None:
        pytest.skip(f"ros-rclpy {md.version('ros-rclpy')}: not a distro scripts/setup installs")
    return distro


def test_this_venv_records_the_distro_of_its_wheels_and_fast_dds():
    distro = _installed_distro()
    record = Path(sys.prefix) / ".panoptic-ros-distro"
    if not record.exists():
        pytest.skip("this venv was not made by scripts/setup")
    assert record.read_text().strip() == distro
    from panoptic_ros.ros import dds_profile

    version, how = dds_profile.fastdds_version()
    assert version is not None and version[0] == FASTDDS_MAJOR[distro], how


def test_ci_runs_the_readme_test_command_of_every_distro():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    cmds = dict(re.findall(r"\[(\w+)\]='([^']+)'", ci))
    assert set(cmds) == set(RCLPY_MAJOR), cmds
    for distro, cmd in cmds.items():
        assert cmd in readme, f"README does not show the {distro} test command {cmd!r}"
        assert "python -m pytest -q test" in cmd
    assert "./scripts/setup && .venv/bin/python -m pytest -q test" in cmds.values()
