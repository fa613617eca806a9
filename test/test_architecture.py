"""The folders are the architecture: imports only go downward, and only the ROS shell talks ROS.

Every module under panoptic_ros/ is parsed (not imported) and each ``import`` / ``from ... import``
anywhere in it, lazy imports inside functions included, is checked:

- layers, lowest first: core < backends < families < evaluation < training < ros < bags < bench < cli.
  A module may import its own layer and any lower one, never a higher one. Imports under
  ``if TYPE_CHECKING:`` are annotations only and are not counted.
- ROS: only ros/, bags/, bench/ and cli/ may import rclpy, rcl_interfaces, builtin_interfaces,
  any ``*_msgs`` / ``*_srvs`` / ``*_interfaces`` message package, or rosbags' message types.

A violation that is known and owned by someone else goes in ALLOWED with a comment saying why and
when it leaves; the list is meant to be empty.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "panoptic_ros"

LAYERS = (
    "core",
    "backends",
    "families",
    "evaluation",
    "training",
    "ros",
    "bags",
    "bench",
    "cli",
)
ROS_LAYERS = {"ros", "bags", "bench", "cli"}

#: (importing module, imported module) pairs tolerated for now. Empty it, don't grow it.
ALLOWED: set[tuple[str, str]] = set()  # known exceptions, each with a comment saying why

ROS_ROOTS = {"rclpy", "rcl_interfaces", "builtin_interfaces", "rosidl_runtime_py", "rosbag2_py"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """(absolute imported name, line) for every runtime import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.append((prefix, node.lineno))
            # ``from panoptic_ros.core import synthetic`` imports a module too
            found.extend((f"{prefix}.{a.name}", node.lineno) for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return sorted({(_module_of(n), ln) for n, ln in found})


def _module_of(name: str) -> str:
    """``panoptic_ros.backends.create_backend`` -> ``panoptic_ros.backends`` (longest module)."""
    parts = name.split(".")
    if parts[0] != "panoptic_ros":
        return name
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in MODULES:
            return ".".join(parts[:i])
    return name


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "panoptic_ros" else None


def _is_ros(name: str) -> bool:
    root = name.split(".")[0]
    return (
        root in ROS_ROOTS
        or root.endswith(("_msgs", "_srvs", "_interfaces"))
        or name.startswith(("rosbags.typesys", "rosbags.interfaces"))
    )


MODULES = _modules()


def test_every_module_is_in_a_layer():
    stray = [m for m in MODULES if m != "panoptic_ros" and _layer(m) not in LAYERS]
    assert not stray, f"modules outside the layer folders {LAYERS}: {stray}"


def _upward() -> list[tuple[str, str, int]]:
    bad = []
    for mod, path in MODULES.items():
        mine = _layer(mod)
        if mine is None:
            continue
        for name, line in _imports(mod, path):
            theirs = _layer(name)
            if theirs in LAYERS and LAYERS.index(theirs) > LAYERS.index(mine):
                bad.append((mod, name, line))
    return bad


def test_imports_only_go_downward():
    bad = [(m, n, ln) for m, n, ln in _upward() if (m, n) not in ALLOWED]
    assert not bad, (
        "upward imports (layer order "
        + " < ".join(LAYERS)
        + "):\n"
        + "\n".join(f"  {m} (line {ln}) imports {n}" for m, n, ln in bad)
    )


def test_allowlist_is_not_stale():
    """An allowed pair that no longer occurs must leave ALLOWED (so it cannot come back)."""
    present = {(m, n) for m, n, _ in _upward()}
    assert not ALLOWED - present, f"remove from ALLOWED: {sorted(ALLOWED - present)}"


def test_only_the_ros_shell_imports_ros():
    bad = []
    for mod, path in MODULES.items():
        if _layer(mod) in ROS_LAYERS:
            continue
        bad += [f"  {mod} (line {ln}) imports {n}" for n, ln in _imports(mod, path) if _is_ros(n)]
    assert not bad, "ROS imports outside ros/, bags/, bench/, cli/:\n" + "\n".join(bad)


def test_checker_sees_lazy_and_relative_imports(tmp_path):
    """The parser itself: imports inside functions count, TYPE_CHECKING ones do not."""
    src = tmp_path / "mod.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from panoptic_ros.cli import main\n"
        "def f():\n    from panoptic_ros.ros import node\n    import rclpy\n"
        "from . import taxonomy\n"
    )
    names = {n for n, _ in _imports("panoptic_ros.core.mod", src)}
    assert "panoptic_ros.ros.node" in names and "rclpy" in names
    assert "panoptic_ros.core.taxonomy" in names
    assert "panoptic_ros.cli.main" not in names and "panoptic_ros.cli" not in names
    assert _is_ros("sensor_msgs.msg") and _is_ros("rosbags.typesys") and not _is_ros("rosbags")


def _listed_in_architecture_md() -> list[str]:
    text = (PKG.parent / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| `")]
    return [ln.split("`")[1] for ln in rows]


def _documented_modules() -> set[str]:
    """Every .py file under panoptic_ros/, relative to it, except package __init__.py files that
    define no function or class (a docstring and a version string are not a module to map)."""
    out = set()
    for path in PKG.rglob("*.py"):
        if path.name == "__init__.py":
            tree = ast.parse(path.read_text())
            if not any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in ast.walk(tree)):
                continue
        out.add(path.relative_to(PKG).as_posix())
    return out


def test_architecture_md_lists_every_module():
    listed = _listed_in_architecture_md()
    dupes = sorted({m for m in listed if listed.count(m) > 1})
    assert not dupes, f"docs/ARCHITECTURE.md lists these more than once: {dupes}"
    tree = _documented_modules()
    assert not tree - set(listed), (
        f"add to docs/ARCHITECTURE.md 'Modules': {sorted(tree - set(listed))}"
    )
    assert not set(listed) - tree, f"not in the tree any more: {sorted(set(listed) - tree)}"
