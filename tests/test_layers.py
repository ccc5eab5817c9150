"""Imports run one way (values -> observe -> net -> auth -> registry -> engine -> triggers -> service -> shells)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "importcore"

# Each folder of importcore/ is one layer; lower ranks never import higher ones.
RANKS = {
    "values": 0,     # errors, references, media types, resource IDs, settings: pure data
    "observe": 1,    # log redaction, spans and counters
    "net": 2,        # host policy, guarded transport, the one retry layer
    "auth": 3,       # credentials, challenges, token flows, the ACR exchange
    "registry": 4,   # the OCI distribution client, upload sessions, ARM look-ups
    "engine": 5,     # plan, blob copy, image copy, the import request and its runner
    "triggers": 6,   # event and webhook payloads, mirror rules (pure)
    "service": 7,    # job store, queue, worker, sweeper, the API's logic
    "cli": 8, "devhost": 8, "__main__": 8, "__init__": 8,  # shells
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


def test_every_module_lives_in_its_layer_folder():
    """The tree is the layer diagram: nothing but the package's face and entry point sits flat."""
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py"]
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(k for k in RANKS if not k.startswith("__"))
