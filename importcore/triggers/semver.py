"""A tiny SemVer 2.0 comparator for tag filters (no dependency).

Tags: `[v]MAJOR[.MINOR[.PATCH]][-PRERELEASE]`; missing parts are 0 (`1.25` is 1.25.0). OCI tags
cannot hold `+build`. Anything else is not a version, and no range contains it.

Ranges: comparators joined by `,` or spaces are ANDed, alternatives joined by `||` are ORed:
`>=1.2,<2`, `>=1.2 <2 || >=3`, `^1.4`, `~2.3`, `=1.2.3`, `!=1.3.0`, `*`.
`^1.2.3` = `>=1.2.3,<2.0.0` (`^0.2.3` = `<0.3.0`, `^0.0.3` = `<0.0.4`); `~1.2.3` = `>=1.2.3,<1.3.0`, `~1` = `<2.0.0`.
Pre-releases (`1.2.0-rc.1`, and also variants such as `1.25.3-alpine`) are in no range unless
`include_prerelease` is set; they then compare by SemVer precedence (`1.2.0-rc.1 < 1.2.0`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..values.errors import UsageError

__all__ = ["Range", "Version", "parse_version"]

_VERSION = re.compile(r"[vV]?(0|[0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?",
                      re.ASCII)
_COMPARATOR = re.compile(r"(>=|<=|==|!=|>|<|=|\^|~)?\s*(.+)", re.ASCII)
_MAX_PART = 10**12  # a tag like 20240101120000 is a number, not a reason to crash


@dataclass(frozen=True, slots=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @property
    def key(self) -> tuple:
        # A release sorts after all of its pre-releases; numeric identifiers before alphanumeric ones.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 1 if not pre else 0, pre)

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core


def _parse(text: str) -> tuple[Version, int] | None:
    m = _VERSION.fullmatch(text.strip())
    if not m:
        return None
    major, minor, patch = m.group(1, 2, 3)  # the pattern requires the major version
    given = [int(p) for p in (major, minor, patch) if p is not None]
    if any(p > _MAX_PART for p in given):
        return None
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    return Version(int(major), int(minor or 0), int(patch or 0), pre), len(given)


def parse_version(tag: str) -> Version | None:
    """A tag as a version, or None when it is not one (`latest`, `alpine`, `sha-1a2b3c`)."""
    if not isinstance(tag, str):
        return None
    parsed = _parse(tag)
    return parsed[0] if parsed else None


@dataclass(frozen=True, slots=True)
class _Comparator:
    op: str
    version: Version

    def holds(self, v: Version) -> bool:
        a, b = v.key, self.version.key
        return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b, "=": a == b, "!=": a != b}[self.op]


@dataclass(frozen=True, slots=True)
class Range:
    text: str
    alternatives: tuple[tuple[_Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        if not isinstance(text, str) or not text.strip():
            raise UsageError("a semver range must be a non-empty string such as \">=1.2,<2\"")
        alternatives = []
        for alt in text.split("||"):
            comparators: list[_Comparator] = []
            tokens = _tokens(alt)
            if not tokens:
                raise UsageError(f"semver range {text!r}: empty alternative around '||'")
            for token in tokens:
                comparators += _comparators(token, text)
            alternatives.append(tuple(comparators))
        return cls(text.strip(), tuple(alternatives))

    def contains(self, version: Version | str | None, *, include_prerelease: bool = False) -> bool:
        if isinstance(version, str):
            version = parse_version(version)
        if version is None or (version.prerelease and not include_prerelease):
            return False
        return any(all(c.holds(version) for c in alt) for alt in self.alternatives)

    def __str__(self) -> str:
        return self.text


def _tokens(alternative: str) -> list[str]:
    """`>= 1.2, <2` -> ['>=1.2', '<2']: an operator may be separated from its version by spaces."""
    raw = [t for t in re.split(r"[,\s]+", alternative.strip()) if t]
    tokens: list[str] = []
    for t in raw:
        if tokens and tokens[-1] in (">=", "<=", "==", "!=", ">", "<", "=", "^", "~"):
            tokens[-1] += t
        else:
            tokens.append(t)
    return tokens


def _comparators(token: str, text: str) -> list[_Comparator]:
    if token in ("*", "x", "X"):
        return []
    m = _COMPARATOR.fullmatch(token)
    parsed = _parse(m.group(2)) if m else None
    if m is None or parsed is None:
        raise UsageError(f"semver range {text!r}: {token!r} is not a comparator such as >=1.2.0, <2, ^1.4 or ~2.3")
    op, (v, given) = m.group(1) or "=", parsed
    if op == "==":
        op = "="
    if op == "^":
        if v.major > 0 or given == 1:
            upper = Version(v.major + 1, 0, 0)
        elif v.minor > 0 or given == 2:
            upper = Version(0, v.minor + 1, 0)
        else:
            upper = Version(0, 0, v.patch + 1)
        return [_Comparator(">=", v), _Comparator("<", upper)]
    if op == "~":
        upper = Version(v.major, v.minor + 1, 0) if given >= 2 else Version(v.major + 1, 0, 0)
        return [_Comparator(">=", v), _Comparator("<", upper)]
    return [_Comparator(op, v)]
