"""The shipped Fast DDS profile for large frames (config/fastdds_large_frames.xml) and how the
project's own processes apply it.

Fast DDS's default shared-memory segment (512 KiB) cannot hold a 640x480 rgb8 frame (0.9 MB), so
such frames go over fragmented UDP and best-effort readers lose most of them. The shipped profile
gives each participant a 16 MiB segment (owned by the WRITING participant: the camera publisher
and the node both need it).

Which environment variable names the profile depends on the Fast DDS that rmw_fastrtps loads,
not on the ROS distro's name: Fast DDS 2.x (Humble, Jazzy) reads only
``FASTRTPS_DEFAULT_PROFILES_FILE`` and ignores ``FASTDDS_DEFAULT_PROFILES_FILE`` without a word;
Fast DDS 3.x (Kilted on) reads ``FASTDDS_DEFAULT_PROFILES_FILE``, and rmw_fastrtps still honours
the deprecated ``FASTRTPS_...`` (with a warning). :func:`fastdds_version` finds the version from
the library rmw_fastrtps_cpp links (its SONAME names it), so every process of the project (launch
files, ``replay``, ``demo --live``, ``bench``, the node's hint) sets the variable that takes
effect. A user's setting always wins: nothing here overrides it (one set under the name this Fast
DDS ignores is passed on under the name it reads).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from panoptic_ros.core.package_files import config_file

PROFILE_FILE = "fastdds_large_frames.xml"
DEFAULT_SEGMENT_MB = 16
FASTDDS_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"  # read by Fast DDS 3.x
FASTRTPS_VAR = "FASTRTPS_DEFAULT_PROFILES_FILE"  # read by Fast DDS 2.x (3.x: deprecated, via rmw)
RMW_LIBRARY = "librmw_fastrtps_cpp.so"
_SONAME = re.compile(rb"lib(fastdds|fastrtps)\.so\.(\d+)(?:\.(\d+))?")
# Distros whose rmw_fastrtps uses Fast DDS 2.x: only a last resort (no library, no wheel found).
_FASTDDS2_DISTROS = ("humble", "iron", "jazzy")


def _version_in(blob: bytes) -> tuple[int, ...] | None:
    m = _SONAME.search(blob)
    return tuple(int(g) for g in m.groups()[1:] if g is not None) if m else None


def _library_dirs() -> list[Path]:
    """Where the dynamic loader would look for rmw_fastrtps_cpp, in its order, then the usual
    places of the venv and of sourced or apt-installed ROS 2."""
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    dirs.append(os.path.join(sys.prefix, "lib"))
    dirs += [
        os.path.join(p, "lib")
        for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
        if p
    ]
    if os.environ.get("ROS_DISTRO"):
        dirs.append(f"/opt/ros/{os.environ['ROS_DISTRO']}/lib")
    return [Path(d) for d in dict.fromkeys(dirs)]


@functools.lru_cache(maxsize=1)
def fastdds_version() -> tuple[tuple[int, ...] | None, str]:
    """(major, minor) of the Fast DDS that rmw_fastrtps uses here, and where that was read.

    In order: the Fast DDS library already mapped into this process (rclpy initialised); the
    SONAME that librmw_fastrtps_cpp.so links (libfastrtps.so.2.14 / libfastdds.so.3.2) in the
    loader's directories; the PyPI wheel's metadata (ros-fastdds / ros-fastrtps); ROS_DISTRO.
    (None, reason) when none of them tells."""
    try:
        maps = Path("/proc/self/maps").read_bytes()
        found = _version_in(b"\n".join(ln for ln in maps.splitlines() if b"/lib" in ln))
        if found:
            return found, "the Fast DDS library loaded in this process"
    except OSError:
        pass
    for d in _library_dirs():
        lib = d / RMW_LIBRARY
        try:
            found = _version_in(lib.read_bytes())
        except OSError:
            continue
        if found:
            return found, f"{lib} links Fast DDS {'.'.join(map(str, found))}"
    for dist in ("ros-fastdds", "ros-fastrtps"):
        try:
            v = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        nums = tuple(int(x) for x in re.findall(r"\d+", v)[:2])
        if nums:
            return nums, f"the {dist} {v} wheel"
    distro = os.environ.get("ROS_DISTRO", "").lower()
    if distro:
        return ((2,) if distro in _FASTDDS2_DISTROS else (3,)), f"ROS_DISTRO={distro}"
    return None, f"no {RMW_LIBRARY} found"


def profile_var() -> str:
    """The profiles-file variable that the Fast DDS in use reads (Fast DDS 3.x's when unknown)."""
    version, _ = fastdds_version()
    return FASTRTPS_VAR if version is not None and version[0] < 3 else FASTDDS_VAR


def profile_env(path) -> dict:
    """``{variable: path}`` that makes Fast DDS load ``path`` (a str, Path or a launch
    substitution) as its profiles file: for launch files' ``additional_env`` and child
    processes' environments."""
    return {profile_var(): str(path) if isinstance(path, (str, os.PathLike)) else path}


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
    """The profile file the user has set under a variable the Fast DDS in use reads, if any."""
    env = os.environ if env is None else env
    var = profile_var()
    if var == FASTDDS_VAR:  # Fast DDS 3.x: rmw_fastrtps still honours the deprecated name
        return env.get(FASTDDS_VAR) or env.get(FASTRTPS_VAR) or None
    return env.get(var) or None


def ignored_profile(env: dict | None = None) -> str | None:
    """A profile set only under the variable that the Fast DDS in use ignores (FASTDDS_ on 2.x)."""
    env = os.environ if env is None else env
    if user_profile(env) or profile_var() != FASTRTPS_VAR:
        return None
    return env.get(FASTDDS_VAR) or None


def apply(choice: str | None = None, env: dict | None = None) -> str | None:
    """Point ``env`` (default: this process, inherited by its children) at a profile, unless the user
    has set one already. ``choice``: None or "default" = the shipped profile; "none" or "" = leave Fast
    DDS defaults; else a path. Call before the first DDS participant of the process. Returns the
    profile in effect (the user's, the one applied, or None)."""
    env = os.environ if env is None else env
    existing = user_profile(env)
    if existing:
        return existing
    misnamed = ignored_profile(env)
    if misnamed:  # the user's choice, under the name this Fast DDS reads
        env.update(profile_env(misnamed))
        return misnamed
    if choice is not None and choice.strip().lower() in ("", "none"):
        return None
    path = shipped_profile() if choice in (None, "default") else Path(choice).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"Fast DDS profile {path} does not exist")
    env.update(profile_env(path))
    return str(path)


def launch_env(choice: str | None, environ: dict | None = None) -> dict[str, str]:
    """``additional_env`` for a node a launch file starts, from its ``dds_profile`` argument
    (a path, "default", or "none" = Fast DDS defaults: ``ros2 launch`` rejects an empty
    ``dds_profile:=``). Empty when the user's environment names a profile the Fast DDS in use
    reads (the node inherits it) or for "none"; the user's profile under the name this Fast DDS
    reads when it was set under the other one; else the variable :func:`apply` sets, so launch
    files never hard-code its name."""
    environ = os.environ if environ is None else environ
    if user_profile(environ):
        return {}
    misnamed = ignored_profile(environ)
    if misnamed:
        return profile_env(misnamed)
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
        f"not lost; 'none' = Fast DDS defaults); an existing {FASTDDS_VAR} (Fast DDS 3.x) or "
        f"{FASTRTPS_VAR} (Fast DDS 2.x) always wins",
    )


def hint(env: dict | None = None) -> str:
    """One line for a best-effort input without a profile, naming the variable that takes effect."""
    try:
        where = str(shipped_profile())
    except FileNotFoundError:
        where = f"share/panoptic_ros/config/{PROFILE_FILE}"
    var = profile_var()
    version, _ = fastdds_version()
    fastdds = f"Fast DDS {'.'.join(map(str, version))}" if version else "Fast DDS"
    misnamed = ignored_profile(env)
    if misnamed:
        return (
            f"best-effort input and no {var}: {fastdds} ignores {FASTDDS_VAR}={misnamed}; set "
            f"{var}={misnamed} for the camera driver and this node instead"
        )
    return (
        f"best-effort input and no {var}: {fastdds}'s 512 KiB shared-memory segment makes frames larger "
        f"than that (e.g. 640x480 rgb8) go over UDP, where most are lost; set {var}={where} for the "
        f"camera driver and this node, or input_qos:=reliable if the camera publishes reliably"
    )
