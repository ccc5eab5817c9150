"""SECURITY.md maps each threat to the tests that show it handled: every test it names must exist."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _named_tests(text: str) -> list[tuple[str, str]]:
    """(file, test) pairs: `tests/x.py::test_a`, and the `::test_b` shorthands after it (same bullet)."""
    found, current = [], None
    for line in text.splitlines():
        if not line.startswith(" "):
            current = None  # a new bullet or paragraph: shorthands need a file named in it first
        for match in re.finditer(r"(tests/[\w/]+\.py)?::(test_\w+)", line):
            current = match.group(1) or current
            assert current, f"SECURITY.md: {match.group(0)!r} before any file is named: {line!r}"
            found.append((current, match.group(2)))
    return found


def _functions(path: Path) -> set[str]:
    return {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}


def test_every_test_security_md_names_exists():
    named = _named_tests((ROOT / "SECURITY.md").read_text())
    assert len(named) >= 40
    missing = [f"{file}::{name}" for file, name in named
               if not (ROOT / file).exists() or name not in _functions(ROOT / file)]
    assert missing == []
