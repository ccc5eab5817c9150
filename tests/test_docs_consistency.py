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


# What someone with only this repository cannot look up: issue numbers, design and style documents
# kept elsewhere, a sibling "shared" checkout. The code and docs must explain themselves instead.
_OUTSIDE_REFERENCES = [
    re.compile(r"\bissues?\s*#?\d+", re.IGNORECASE),  # "issue 4", "issue #12"
    re.compile(r"\b(?:DESIGN|STYLE)\b"),  # "DESIGN.md's contract", "STYLE.md rule 7"
    re.compile(r"(?<![\w.-])(?:\.\./)?shared/"),  # "../shared/..."
]
_SCANNED = ["importcore", "tests", "bench", "scripts", "docs", "infra", "function_app.py", "host.json", "Makefile",
            "local.settings.json.example", "*.md"]


def _scanned_files() -> list[Path]:
    files: list[Path] = []
    for entry in _SCANNED:
        for path in sorted(ROOT.glob(entry)):
            files += [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]
    this = Path(__file__).resolve()
    return [p for p in files if p.resolve() != this and "__pycache__" not in p.parts
            and p.suffix not in (".png", ".pyc")]


def test_nothing_cites_what_is_not_in_the_repository():
    files = _scanned_files()
    assert len(files) > 100 and ROOT / "README.md" in files and ROOT / "importcore" / "net" / "retry.py" in files
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                      for pattern in _OUTSIDE_REFERENCES if pattern.search(line)]
    assert found == [], "reword these so they explain themselves:\n" + "\n".join(found)
