"""`WWW-Authenticate` parsing (RFC 7235 section 4.1; Docker token spec's Bearer realm,service,scope)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Challenge", "parse_challenges"]

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*({_QUOTED}|{_TOKEN}=*)\s*(,|$)", re.ASCII)
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$|(?=,))", re.ASCII)


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lowercased: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_challenges(header: str | None) -> list[Challenge]:
    """All challenges in a header value; unparseable tails are ignored, never raised."""
    out: list[Challenge] = []
    text = (header or "")[:8192]
    pos = 0
    while pos < len(text):
        while pos < len(text) and text[pos] in " ,":
            pos += 1
        m = _SCHEME.match(text, pos)
        if not m:
            break
        scheme, pos = m.group(1).lower(), m.end()
        params: dict[str, str] = {}
        while True:
            p = _PARAM.match(text, pos)
            if not p:
                break
            params[p.group(1).lower()] = _unquote(p.group(2))
            pos = p.end()
        out.append(Challenge(scheme, params))
    return out
