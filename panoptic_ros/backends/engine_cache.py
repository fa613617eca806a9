"""GPU-free decisions of the TensorRT backend: cache keys, invalidation, builder config, files.

Everything here is plain Python (no tensorrt, no CUDA) so it is tested on any machine.
``backends/tensorrt.py`` only glues these functions to the TensorRT API.

Cache layout (one directory, created ``0o700``)::

    <cache_dir>/
      <slot>.engine          serialised TensorRT engine (written atomically, mode 0o600)
      <slot>.json            sidecar: the key fields + engine size/sha256 (written after the engine)
      timing-<trt>-sm<cc>.cache   TensorRT timing cache shared by every build on that GPU/version
      <slot>.calib           INT8 calibration table (int8 slots only)

A *slot* is what the user chose: model name, precision, input shape
(``default_fp16_b1_240x320``). The *key* adds what the environment decides: the ONNX file's
sha256, the TensorRT version, the GPU name and compute capability. When the sidecar's key
fields differ from the current ones the engine is rebuilt and ``why_rebuild`` says which
field changed. Different slots coexist, so switching precision back and forth never rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

#: bump when the sidecar layout changes; an old sidecar then reads as "schema changed"
SCHEMA_VERSION = 1

PRECISIONS = ("fp32", "fp16", "int8")

#: default builder workspace (MiB); TensorRT never allocates more than a tactic needs
DEFAULT_WORKSPACE_MB = 1024


class EngineCacheError(ValueError):
    """Bad cache name/path or unusable cache directory."""


# -- key --------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineMeta:
    """Everything an engine depends on. Equal metas <=> the cached engine may be reused."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    precision: str  # fp32 | fp16 | int8
    input_shape: tuple[int, ...]  # static shape of the "image" input, e.g. (1, 3, 240, 320)

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", normalize_precision(self.precision))
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @property
    def key(self) -> str:
        return cache_key(self)


KEY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EngineMeta))


def cache_key(meta: EngineMeta | Mapping[str, Any]) -> str:
    """Stable 16-hex-digit key of the key fields (canonical JSON, sha256)."""
    d = meta.to_dict() if isinstance(meta, EngineMeta) else dict(meta)
    canon = {k: (list(d[k]) if k == "input_shape" else d[k]) for k in KEY_FIELDS}
    canon["schema"] = SCHEMA_VERSION
    blob = json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def why_rebuild(
    old_meta: Mapping[str, Any] | None, new_meta: EngineMeta | Mapping[str, Any]
) -> str | None:
    """None when a cached engine described by ``old_meta`` fits ``new_meta``; else why not.

    The reason names every key field that changed with old -> new values, e.g.
    ``"tensorrt_version changed (10.0.1 -> 10.3.0)"``.
    """
    new = new_meta.to_dict() if isinstance(new_meta, EngineMeta) else dict(new_meta)
    if old_meta is None:
        return "no cached engine"
    old = dict(old_meta)
    if old.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        return f"cache schema changed ({old.get('schema')} -> {SCHEMA_VERSION})"
    changed = []
    for k in KEY_FIELDS:
        if k not in old:
            changed.append(f"{k} missing from cache metadata")
            continue
        a, b = old[k], new[k]
        if k == "input_shape":
            a, b = list(a), list(b)
        if a != b:
            changed.append(f"{k} changed ({_short(a)} -> {_short(b)})")
    return "; ".join(changed) or None


def _short(v: Any) -> str:
    s = "x".join(map(str, v)) if isinstance(v, list) else str(v)
    return s[:12] + "..." if len(s) == 64 and all(c in "0123456789abcdef" for c in s) else s


# -- names and paths --------------------------------------------------------------------
_BAD_CHARS = set("/\\\0:")


def sanitize_name(name: str) -> str:
    """Return ``name`` if it is a safe single file name in the cache dir, else raise.

    Rejects path separators, ``..``, NUL, leading dots (hidden/temp files), empty names.
    """
    if not isinstance(name, str) or not name:
        raise EngineCacheError("engine cache name must be a non-empty string")
    if (
        any(c in _BAD_CHARS for c in name)
        or ".." in name
        or name.startswith(".")
        or name != name.strip()
    ):
        raise EngineCacheError(
            f"unsafe engine cache name {name!r}: no path separators, '..', ':' or leading dots"
        )
    if len(name) > 200:
        raise EngineCacheError(f"engine cache name too long ({len(name)} > 200 chars)")
    return name


def cache_path(cache_dir: str | os.PathLike, name: str) -> Path:
    """``cache_dir / name`` after checking the result cannot escape ``cache_dir``."""
    base = Path(cache_dir).resolve()
    p = (base / sanitize_name(name)).resolve()
    if p.parent != base:
        raise EngineCacheError(f"engine path {p} escapes cache dir {base}")
    return p


def slot_name(model_name: str, precision: str, input_shape: Iterable[int]) -> str:
    """Stable, file-name-safe slot for a user choice, e.g. ``default_fp16_b1_240x320``."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4:
        raise EngineCacheError(f"input shape must be [B, 3, H, W], got {list(shape)}")
    safe_model = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(model_name)) or "model"
    return sanitize_name(
        f"{safe_model}_{normalize_precision(precision)}_b{shape[0]}_{shape[2]}x{shape[3]}"
    )


def engine_paths(cache_dir: str | os.PathLike, slot: str) -> tuple[Path, Path]:
    """(engine file, JSON sidecar) of ``slot`` inside ``cache_dir``."""
    sanitize_name(slot)
    return cache_path(cache_dir, slot + ".engine"), cache_path(cache_dir, slot + ".json")


def timing_cache_name(tensorrt_version: str, compute_capability: str) -> str:
    """Timing caches are only valid for one TensorRT version on one GPU architecture."""
    raw = f"timing-trt{tensorrt_version}-sm{str(compute_capability).replace('.', '')}.cache"
    return sanitize_name(
        "".join(c if c.isalnum() or c in "-_." else "-" for c in raw).replace("..", ".")
    )


def ensure_cache_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) with mode 0o700; tighten it if we own it and it is looser.

    Engines are deserialised into the process, so a directory others can write to is refused.
    """
    p = Path(path).expanduser()
    p.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = p.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise EngineCacheError(f"engine cache path {p} is not a directory")
    if stat.S_IMODE(st.st_mode) & 0o077:
        if st.st_uid == os.getuid():
            os.chmod(p, 0o700)
        elif stat.S_IMODE(st.st_mode) & 0o022:
            raise EngineCacheError(
                f"engine cache dir {p} is writable by other users and not ours; choose another"
            )
    return p


def cache_root() -> Path:
    """$PANOPTIC_ROS_CACHE or ~/.cache/panoptic_ros: exported ONNX files, and engines/ below."""
    return Path(os.environ.get("PANOPTIC_ROS_CACHE") or Path.home() / ".cache" / "panoptic_ros")


def default_cache_dir() -> Path:
    """``cache_root()``, created 0o700 (see ``ensure_cache_dir``)."""
    return ensure_cache_dir(cache_root())


# -- atomic writes ----------------------------------------------------------------------
STALE_TEMP_AGE_S = 3600.0


def remove_stale_temp_files(
    directory: str | os.PathLike, max_age_s: float = STALE_TEMP_AGE_S
) -> list[Path]:
    """Delete ``*.tmp`` files older than ``max_age_s`` in ``directory``; returns what was removed.

    Atomic writes leave their temp file behind only when the process is killed (SIGKILL, power
    loss) between mkstemp and os.replace; a write takes seconds, so an hour-old temp file is
    abandoned. Without this a robot that is often hard-killed while exporting slowly fills its
    cache disk with partial ONNX / engine files nobody ever reads.
    """
    now = time.time()
    removed = []
    for p in Path(directory).glob("*.tmp"):
        try:
            if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime > max_age_s:
                p.unlink()
                removed.append(p)
        except OSError:  # raced with another process or not ours: leave it
            pass
    return removed


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes | memoryview, mode: int = 0o600
) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same dir + fsync + os.replace.

    Readers see the old file or the complete new one, never a partial file; on any error the
    temp file is removed and the old file (if any) is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


# -- cache entries ----------------------------------------------------------------------
def sidecar_dict(
    meta: EngineMeta, engine_bytes: bytes | memoryview, **extra: Any
) -> dict[str, Any]:
    d = meta.to_dict()
    d.update(
        schema=SCHEMA_VERSION,
        key=cache_key(meta),
        engine_bytes=len(engine_bytes),
        engine_sha256=hashlib.sha256(engine_bytes).hexdigest(),
    )
    d.update(extra)
    return d


def write_entry(
    cache_dir: str | os.PathLike,
    slot: str,
    engine_bytes: bytes | memoryview,
    meta: EngineMeta,
    **extra: Any,
) -> Path:
    """Store an engine + sidecar atomically; the sidecar is written last (it vouches for the engine)."""
    engine_bytes = bytes(engine_bytes)
    engine, sidecar = engine_paths(ensure_cache_dir(cache_dir), slot)
    atomic_write_bytes(engine, engine_bytes)
    atomic_write_json(sidecar, sidecar_dict(meta, engine_bytes, **extra))
    return engine


def read_sidecar(sidecar: str | os.PathLike) -> dict[str, Any] | None:
    try:
        d = json.loads(Path(sidecar).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"_error": f"unreadable cache metadata {Path(sidecar).name}: {exc}"}
    return (
        d
        if isinstance(d, dict)
        else {"_error": f"cache metadata {Path(sidecar).name} is not a JSON object"}
    )


def check_entry(
    cache_dir: str | os.PathLike, slot: str, meta: EngineMeta
) -> tuple[Path, str | None]:
    """(engine path, reason to rebuild or None). Reads files only; never deserialises.

    Reasons: no cached engine / missing or corrupt sidecar / any key field changed /
    engine file missing, truncated or altered (size and sha256 against the sidecar).
    """
    engine, sidecar = engine_paths(cache_dir, slot)
    old = read_sidecar(sidecar)
    if old is None:
        return (
            engine,
            f"no cached engine at {engine}"
            if not engine.exists()
            else "cache metadata missing (engine without sidecar)",
        )
    if "_error" in old:
        return engine, old["_error"]
    reason = why_rebuild(old, meta)
    if reason:
        return engine, reason
    try:
        size = engine.stat().st_size
    except FileNotFoundError:
        return engine, f"cached engine file missing: {engine.name}"
    if size != old.get("engine_bytes"):
        return (
            engine,
            f"cached engine file truncated or altered ({size} bytes, metadata says {old.get('engine_bytes')})",
        )
    if sha256_file(engine) != old.get("engine_sha256"):
        return engine, "cached engine file altered (sha256 differs from metadata)"
    return engine, None


# -- builder configuration as plain data ------------------------------------------------
@dataclass(frozen=True)
class BuilderSettings:
    """What tensorrt.py applies to an IBuilderConfig, as names of TensorRT enums.

    ``flags`` are ``trt.BuilderFlag`` member names; ``memory_pools`` maps ``trt.MemoryPoolType``
    member names to bytes; ``calibrate`` says an INT8 calibrator is needed (implicit
    quantization); ``strongly_typed`` says the network is created with
    ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (explicit quantization on TensorRT 10: the
    graph's Q/DQ nodes and tensor types decide every layer's precision).
    """

    precision: str
    flags: tuple[str, ...]
    memory_pools: tuple[tuple[str, int], ...]
    calibrate: bool
    calibration_batches: int
    strongly_typed: bool = False
    explicit_quantization: bool = False


def normalize_precision(precision: str) -> str:
    p = str(precision).strip().lower()
    if p not in PRECISIONS:
        raise EngineCacheError(
            f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
        )
    return p


def builder_settings(
    precision: str = "fp16",
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    calibration_batches: int = 16,
    *,
    explicit_quantization: bool = False,
    tensorrt_major: int = 10,
) -> BuilderSettings:
    """Map a precision + workspace to TensorRT builder flags (fp32: none; fp16: FP16).

    int8 has two forms (TensorRT developer guide, "Explicit Quantization"):
    * ``explicit_quantization`` (the ONNX graph carries Q/DQ nodes, families/quantize.py): no
      calibrator, the scales come from the graph. TensorRT >= 10: a strongly typed network and no
      precision flags ("Use explicit quantization with Strong Typing. Precision-control build
      flags are not required and should not be specified"); TensorRT 8.x: the INT8 flag (+ FP16
      so unquantized layers may run in half precision), as 8.x requires for Q/DQ networks.
    * implicit (a plain fp32 graph): INT8 + FP16 and an entropy calibrator over generated scenes
      (deprecated in TensorRT 10, kept for user graphs that are not quantized).
    """
    p = normalize_precision(precision)
    if int(workspace_mb) <= 0:
        raise EngineCacheError(f"workspace_mb must be positive, got {workspace_mb}")
    explicit = p == "int8" and bool(explicit_quantization)
    strongly_typed = explicit and int(tensorrt_major) >= 10
    flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[p]
    if strongly_typed:
        flags = ()
    return BuilderSettings(
        precision=p,
        flags=flags,
        memory_pools=(("WORKSPACE", int(workspace_mb) << 20),),
        calibrate=p == "int8" and not explicit,
        calibration_batches=int(calibration_batches) if p == "int8" and not explicit else 0,
        strongly_typed=strongly_typed,
        explicit_quantization=explicit,
    )


def compute_capability_str(major: int, minor: int) -> str:
    return f"{int(major)}.{int(minor)}"
