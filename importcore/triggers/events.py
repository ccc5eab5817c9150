"""What every trigger payload is reduced to: a PushEvent (a tag was pushed somewhere), plus the
small JSON helpers the parsers share. Pure: bytes and mappings in, frozen values out, and the only
exceptions are ImporterError subclasses (UsageError for anything malformed)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from dataclasses import dataclass, field

from ..values.errors import LimitExceeded, UsageError
from ..values.reference import Reference, parse_registry

__all__ = ["MAX_BODY_BYTES", "ParsedDelivery", "PushEvent", "header"]

# Event Grid delivers at most 1 MB per event; registries send far less. GitHub's registry_package
# payloads carry the manifest and labels, still well under this.
MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PushEvent:
    """A tagged manifest was pushed to `registry/repository:tag` (digest when the sender told us).

    Values are validated and normalised as in Reference: lowercase host, `docker.io` for Docker Hub
    and its `library/` prefix, digests as `sha256:<64 hex>`.
    """

    registry: str
    repository: str
    tag: str
    digest: str | None
    media_type: str | None
    provider: str  # "eventgrid" | "distribution" | "acr" | "dockerhub" | "harbor" | "github"
    event_id: str | None = None
    action: str = "push"  # "push", or "chart_push" for ACR's legacy Helm repositories

    @property
    def reference(self) -> Reference:
        """registry/repository:tag@digest: pinned to the pushed digest when known, tag kept."""
        return Reference(self.registry, self.repository, self.tag, self.digest)

    def __str__(self) -> str:
        return f"{self.provider} push {self.reference}"

    @classmethod
    def build(cls, *, registry: str, repository: str, tag: str, digest: str | None, media_type: str | None,
              provider: str, event_id: str | None = None, action: str = "push", where: str = "event") -> PushEvent:
        """Validate the pieces with the reference grammar; every failure is a UsageError naming `where`."""
        host = event_host(registry, where=where)
        text = f"{host}/{repository}:{tag}" + (f"@{digest}" if digest else "")
        try:
            ref = Reference.parse(text, default_registry=None)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc.message}", target=where) from None
        if ref.registry != host:  # "host/..." must never re-read as a Docker Hub path
            raise UsageError(f"{where}: registry {registry!r} is not a valid registry host", target=where)
        return cls(ref.registry, ref.repository, tag, ref.digest, clean(media_type, 255), provider,
                   clean(event_id, 200), action)


@dataclass(frozen=True, slots=True)
class ParsedDelivery:
    """One HTTP delivery, parsed: the push events to act on, and why the rest was ignored.

    `validation_code` is set only for Event Grid's SubscriptionValidationEvent: answer
    `200 {"validationResponse": validation_code}` and queue nothing.
    """

    events: tuple[PushEvent, ...] = ()
    ignored: tuple[str, ...] = ()  # one line per ignored event, for debug logs
    validation_code: str | None = None
    validation_url: str | None = None


def event_host(value: object, *, where: str) -> str:
    """A registry host named by an event (a Host header, a URL's host): host[:port], fully qualified.

    Unlike the CLI's --name, a bare word is not an ACR short name here: it is a host we cannot reach
    by that name from elsewhere, so it is refused rather than guessed.
    """
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: no registry host", target=where)
    host = value.strip().lower()
    bare = host.split("://", 1)[-1].rstrip("/")
    if "." not in bare and ":" not in bare and bare != "localhost":
        raise UsageError(f"{where}: registry host {value[:80]!r} is not fully qualified (host.domain[:port])",
                         target=where)
    try:
        return parse_registry(host)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.message}", target=where) from None


# -- JSON helpers shared by the parsers ----------------------------------------------------------

def load_json(body: bytes | str, *, what: str, max_bytes: int = MAX_BODY_BYTES) -> object:
    """Parse a request body; anything but well-formed JSON is a UsageError, never another exception."""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise UsageError(f"{what}: the body must be bytes")
    if len(body) > max_bytes:
        raise LimitExceeded(f"{what}: the body is {len(body)} bytes, over the {max_bytes}-byte limit")
    if not bytes(body).strip():
        raise UsageError(f"{what}: the body is empty")
    try:
        text = bytes(body).decode("utf-8-sig")  # RFC 8259: JSON between systems is UTF-8
    except UnicodeDecodeError:
        raise UsageError(f"{what}: the body is not UTF-8") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise UsageError(f"{what}: the body is nested too deeply") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UsageError(f"{what}: the body is not valid JSON ({exc.__class__.__name__})") from None


def obj(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a JSON object, got {_kind(value)}", target=where)
    return value


def opt_obj(container: dict, key: str, where: str) -> dict:
    """container[key] as an object; absent or null is an empty object."""
    value = container.get(key)
    return {} if value is None else obj(value, f"{where}.{key}")


def opt_str(container: dict, key: str, where: str) -> str | None:
    """container[key] as a string; absent, null or "" is None; any other type is a UsageError."""
    value = container.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UsageError(f"{where}.{key}: expected a string, got {_kind(value)}", target=f"{where}.{key}")
    return value


def req_str(container: dict, key: str, where: str) -> str:
    value = opt_str(container, key, where)
    if value is None:
        raise UsageError(f"{where}.{key} is required", target=f"{where}.{key}")
    return value


def opt_list(container: dict, key: str, where: str) -> list:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise UsageError(f"{where}.{key}: expected an array, got {_kind(value)}", target=f"{where}.{key}")
    return value


def header(headers: Mapping[str, Any] | Iterable[tuple[Any, Any]] | None, name: str) -> str | None:
    """Case-insensitive header lookup on any mapping (a dict, azure.functions' headers, httpx's) or
    sequence of (name, value) pairs; duck-typed, as those header classes share no base."""
    if not headers:
        return None
    get = getattr(headers, "get", None)
    value = get(name) if callable(get) else None
    if value is None:
        lowered = name.lower()
        items = getattr(headers, "items", None)
        pairs: Iterable[Any] = items() if callable(items) else headers
        for key, val in pairs:
            if isinstance(key, str) and key.lower() == lowered:
                value = val
                break
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def media_type_base(value: str | None) -> str | None:
    """`application/x; charset=utf-8` -> `application/x`."""
    return value.split(";", 1)[0].strip().lower() or None if value else None


def clean(text: str | None, limit: int = 200) -> str | None:
    """Free text from a payload made safe to log and store: printable ASCII (others escaped), bounded."""
    if not text:
        return None
    out = text.encode("ascii", "backslashreplace").decode("ascii")
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in out)
    return out[:limit]


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


@dataclass(slots=True)
class Collector:
    """Accumulates events and ignore reasons while a delivery is walked."""

    events: list[PushEvent] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def ignore(self, where: str, why: str) -> None:
        self.ignored.append(clean(f"{where}: {why}", 300) or where)

    def result(self, **extra) -> ParsedDelivery:
        return ParsedDelivery(tuple(self.events), tuple(self.ignored), **extra)
