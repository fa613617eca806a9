"""The shipped Fast DDS profile for large frames (config/fastdds_large_frames.xml) and how the
project's own processes apply it.

Fast DDS's default shared-memory segment (512 KiB) cannot hold a 640x480 rgb8 frame (0.9 MB), so
such frames go over fragmented UDP and best-effort readers lose most of them. The shipped profile
gives each participant a 16 MiB segment (owned by the WRITING participant: the camera publisher
and the node both need it). Fast DDS 3.x reads ``FASTDDS_DEFAULT_PROFILES_FILE``;
rmw_fastrtps still honours the deprecated ``FASTRTPS_DEFAULT_PROFILES_FILE`` (with a warning).
A user's setting of either always wins: nothing here overrides it.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from panoptic_ros.core.package_files import config_file

PROFILE_FILE = "fastdds_large_frames.xml"
DEFAULT_SEGMENT_MB = 16
ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
LEGACY_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"


def shipped_profile() -> Path:
    """config/fastdds_large_frames.xml from the source tree or the installed share directory."""
    return config_file(PROFILE_FILE)


def profile_xml(segment_mb: int = DEFAULT_SEGMENT_MB) -> str:
    """The shipped profile's text with a ``segment_mb`` MiB shared-memory segment (the file is the template)."""
    size = int(segment_mb) * 2**20
    if size <= 0:
        raise ValueError(f"segment size must be > 0 MiB, got {segment_mb}")
    text, n = re.subn(
        r"<(segment_size|maxMessageSize)>\d+</\1>",
        lambda m: f"<{m[1]}>{size}</{m[1]}>",
        shipped_profile().read_text(),
    )
    assert n == 2, f"{PROFILE_FILE}: expected segment_size and maxMessageSize, replaced {n}"
    return text


def large_shm_profile(segment_mb: int = DEFAULT_SEGMENT_MB) -> Path:
    """Path of a profile with a ``segment_mb`` MiB segment: the shipped file for the default size,
    else a copy with the size changed in the temp directory."""
    if int(segment_mb) == DEFAULT_SEGMENT_MB:
        return shipped_profile()
    path = Path(tempfile.gettempdir()) / f"panoptic_fastdds_shm_{int(segment_mb)}mb.xml"
    path.write_text(profile_xml(segment_mb))
    return path


def user_profile(env: dict | None = None) -> str | None:
    """The profile file the user has set (FASTDDS_ or legacy FASTRTPS_ variable), if any."""
    env = os.environ if env is None else env
    return env.get(ENV) or env.get(LEGACY_ENV) or None


def apply(choice: str | None = None, env: dict | None = None) -> str | None:
    """Point ``env`` (default: this process, inherited by its children) at a profile, unless the user
    has set one already. ``choice``: None or "default" = the shipped profile; "none" or "" = leave Fast
    DDS defaults; else a path. Call before the first DDS participant of the process. Returns the
    profile in effect (the user's, the one applied, or None)."""
    env = os.environ if env is None else env
    existing = user_profile(env)
    if existing:
        return existing
    if choice is not None and choice.strip().lower() in ("", "none"):
        return None
    path = shipped_profile() if choice in (None, "default") else Path(choice).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"Fast DDS profile {path} does not exist")
    env[ENV] = str(path)
    return str(path)


def launch_env(choice: str | None, environ: dict | None = None) -> dict[str, str]:
    """``additional_env`` for a node a launch file starts, from its ``dds_profile`` argument
    (a path, "default", or "none" = Fast DDS defaults: ``ros2 launch`` rejects an empty
    ``dds_profile:=``). Empty when the user's environment names a profile already (the node
    inherits it) or for "none"; else the variable :func:`apply` sets, so launch files never
    hard-code its name."""
    environ = os.environ if environ is None else environ
    if user_profile(environ):
        return {}
    env: dict[str, str] = {}
    apply(choice, env)
    return env


def add_argument(p) -> None:
    """``--dds-profile PATH|none`` for commands that start DDS participants."""
    p.add_argument(
        "--dds-profile",
        default=None,
        metavar="PATH|none",
        help=f"Fast DDS profile for this process and the processes it starts (default: the shipped "
        f"{PROFILE_FILE}, a {DEFAULT_SEGMENT_MB} MiB shared-memory segment so large frames are "
        f"not lost; 'none' = Fast DDS defaults); an existing {ENV} always wins",
    )


def hint() -> str:
    """One line for a best-effort input without a profile."""
    try:
        where = str(shipped_profile())
    except FileNotFoundError:
        where = f"share/panoptic_ros/config/{PROFILE_FILE}"
    return (
        f"best-effort input and no {ENV}: Fast DDS's 512 KiB shared-memory segment makes frames larger "
        f"than that (e.g. 640x480 rgb8) go over UDP, where most are lost; set {ENV}={where} for the camera "
        f"driver and this node, or input_qos:=reliable if the camera publishes reliably"
    )
