"""host.json options and app-setting resolution, as the Functions host reads them."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..values.errors import ConfigError

_SETTING = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d+)(?::(\d+)(?:\.(\d+))?)?$")


def resolve(value: str, settings: Mapping[str, str], *, what: str) -> str:
    """Replace every %NAME% with the app setting NAME, as the host does for binding expressions."""
    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise ConfigError(f"{what} refers to app setting '{name}', which is not set")
        return settings[name]
    return _SETTING.sub(lookup, value)


def storage_connection(name: str | None, settings: Mapping[str, str], *, what: str) -> str:
    """The connection string a binding's `connection` names (default AzureWebJobsStorage)."""
    name = name or "AzureWebJobsStorage"
    # The host also accepts the name with an AzureWebJobs prefix (connection="Storage" -> AzureWebJobsStorage).
    candidates = (name,) if name.startswith("AzureWebJobs") else (name, f"AzureWebJobs{name}")
    for candidate in candidates:
        if settings.get(candidate):
            return settings[candidate]
    raise ConfigError(f"{what}: storage connection '{name}' is not set: set the app setting "
                      f"{' or '.join(candidates)} (in local.settings.json's Values or the environment; "
                      "UseDevelopmentStorage=true for Azurite on its default ports)")


def timespan(value: object, *, what: str) -> float:
    """Seconds of a host.json TimeSpan: "[d.]hh:mm[:ss[.fff]]", or a number of milliseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a TimeSpan, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value) / 1000.0
    match = _TIMESPAN.match(str(value).strip())
    if not match:
        raise ConfigError(f"{what}: {value!r} is not a TimeSpan like 00:00:30")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


@dataclass(frozen=True)
class QueueOptions:
    """extensions.queues, with the Storage extension 5.x defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> QueueOptions:
        """Parse and validate host.json's extensions.queues object."""
        batch = _int(raw, "batchSize", 16, 1, 32)
        encoding = str(raw.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ConfigError(f"host.json extensions.queues.messageEncoding: {encoding!r} is not base64 or none")
        return cls(
            batch_size=batch,
            new_batch_threshold=_int(raw, "newBatchThreshold", batch // 2, 0, 10_000),
            # The host never polls faster than every 100 ms, whatever the setting.
            max_polling_interval=max(0.1, _span(raw, "maxPollingInterval", 60.0)),
            visibility_timeout=max(0.0, _span(raw, "visibilityTimeout", 0.0)),
            max_dequeue_count=_int(raw, "maxDequeueCount", 5, 1, 10_000),
            message_encoding=encoding,
        )


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json that devhost honours."""

    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()
    functions: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, object] | None) -> HostConfig:
        """Parse a loaded host.json document."""
        raw = raw or {}
        extensions = _object(raw, "extensions")
        http = _object(extensions, "http")
        only = raw.get("functions")
        return cls(
            route_prefix=str(http.get("routePrefix", "api")).strip("/"),
            queues=QueueOptions.from_json(_object(extensions, "queues")),
            functions=tuple(str(name) for name in only) if isinstance(only, list) else None,
        )


def _object(raw: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"host.json: '{key}' must be an object")
    return value


def _int(raw: Mapping[str, object], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"host.json extensions.queues.{key}: {value!r} is not an integer in [{low}, {high}]")
    return value


def _span(raw: Mapping[str, object], key: str, default: float) -> float:
    return timespan(raw[key], what=f"host.json extensions.queues.{key}") if key in raw else default
