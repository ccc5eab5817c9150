"""Imports run one way (values -> auth -> registry -> copy -> service -> shells), walked with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "importcore"

# Lower ranks never import higher ones. A package (auth, service, triggers, devhost) has one rank.
RANKS = {
    "errors": 0, "reference": 0, "media": 0, "settings": 0, "redact": 0, "retry": 0, "resourceid": 0,
    "telemetry": 0,
    "hostpolicy": 1, "transport": 1,
    "auth": 2,
    "request": 3, "uploads": 3, "registry": 3, "arm": 3,
    "plan": 4, "blobcopy": 4, "copy": 4, "triggers": 4,
    "runner": 5, "progressbar": 5,
    "service": 6,
    "cli": 7, "devhost": 7, "__main__": 7, "__init__": 7,
}
SHELL_ONLY = ("azure.functions",)  # only the shells (function_app.py, devhost) may import these


def module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def imports(path: Path) -> list[tuple[str, int]]:
    """(absolute dotted name, line) of every import in the file, including ones inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(("importcore", *path.relative_to(PACKAGE).parent.parts))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if not node.module:  # from . import x
                    found += [(f"{name}.{alias.name}", node.lineno) for alias in node.names]
                    continue
            else:
                name = node.module or ""
            found.append((name, node.lineno))
    return found


FILES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_imports_point_down(path):
    own = module_of(path)
    assert own in RANKS, f"{path}: give the module a rank in RANKS"
    for name, line in imports(path):
        parts = name.split(".")
        if parts[0] == "importcore" and len(parts) > 1:
            target = parts[1]
            if target == own:
                continue
            assert RANKS[target] <= RANKS[own], f"{path}:{line} imports {name} (rank {RANKS[target]} > {RANKS[own]})"
        if own != "devhost":
            assert not name.startswith(SHELL_ONLY), f"{path}:{line}: importcore must not import {name}"


def test_function_app_stays_thin():
    """Each handler decodes, calls the service, encodes: a few lines, no logic."""
    tree = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            length = node.end_lineno - node.lineno + 1
            assert length <= 15, f"function_app.{node.name} is {length} lines"
