"""Imports in src/gankit point downwards (the layer table of docs/architecture.md) and sit at
module top (function-local imports only in gankit/cli/)."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "gankit"
OPTIONAL = {"h5py"}  # optional dependency (the hdf5 extra), imported where it is used


def _layers() -> list[list[str]]:
    """Rows of module patterns, bottom row first, from the fenced block after the marker."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- layer table.*?-->\s*```text\n(.*?)```", text, re.S).group(1)
    rows = [line.split(":", 1)[1].split() for line in block.strip().splitlines()]
    return rows[::-1]


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()
LAYERS = _layers()


def layer_of(module: str) -> int:
    for i, row in enumerate(LAYERS):
        if module in row:
            return i
    for i, row in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, p) for p in row if "*" in p):
            return i
    raise AssertionError(f"{module} is not in the layer table of docs/architecture.md")


def _targets(node: ast.AST, module: str, is_pkg: bool) -> list[str]:
    """gankit modules an import statement loads (submodules named in ``from X import y``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "gankit"]
    base = node.module or ""
    if node.level:
        pkg = module.split(".") if is_pkg else module.split(".")[:-1]
        base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
    if base.split(".")[0] != "gankit":
        return []
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    return subs or [base]


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_layers_never_see_the_config():
    assert layer_of("gankit.layers.attention") < layer_of("gankit.config")


def test_imports_point_downwards_and_sit_at_module_top():
    problems = []
    for module, path in sorted(MODULES.items()):
        tree = ast.parse(path.read_text(), str(path))
        top = set(map(id, tree.body))
        for stmt in tree.body:  # module-level `if`/`try` blocks (version shims) count as top
            if isinstance(stmt, (ast.If, ast.Try)):
                top |= {id(n) for n in ast.walk(stmt)}
        in_cli = module == "gankit.cli" or module.startswith("gankit.cli.")
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            optional = any(n.split(".")[0] in OPTIONAL for n in names)
            if id(node) not in top and not in_cli and not optional:
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: function-local import")
            for target in _targets(node, module, path.name == "__init__.py"):
                if target in MODULES and layer_of(target) > layer_of(module):
                    problems.append(
                        f"{path.relative_to(ROOT)}:{node.lineno}: {module} imports {target}, "
                        "a higher layer"
                    )
    assert not problems, "\n".join(problems)


def test_the_check_catches_an_upward_import(tmp_path):
    """The walker itself: a module of `layers` importing `config` is reported."""
    node = ast.parse("from gankit.config import ConfigError").body[0]
    (target,) = _targets(node, "gankit.layers.attention", False)
    assert layer_of(target) > layer_of("gankit.layers.attention")
    node = ast.parse("from gankit.training import distributed, speed").body[0]
    assert _targets(node, "gankit.bench", False) == [
        "gankit.training.distributed",
        "gankit.training.speed",
    ]
