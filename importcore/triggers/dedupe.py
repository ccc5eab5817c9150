"""Deliveries are at-least-once: keys that make the same import the same job (pure).

- `dedupe_key`: the same (source digest, target registry, target repo:tag) is one job within a window;
  the second delivery gets the first job's id back. Without a digest (Docker Hub) the full source
  reference stands in: resolve the tag first and key on the digest where possible.
- `target_key`: one per target tag, whatever the source, so that a new digest for a tag whose import
  is still running queues after it instead of racing it.
- `within_window`: is a key first seen at `first_seen` still a duplicate `now`? A sliding window per
  key (store the first-seen time with the key), not fixed buckets that split a storm at an edge.
  The window is the setting IMPORT_DEDUPE_WINDOW_SECONDS (Settings.dedupe_window_seconds).

Keys are hex SHA-256, safe as Azure Table PartitionKey/RowKey (no '/', '\\', '#', '?').
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

from ..values.reference import Reference, TargetSpec

__all__ = ["dedupe_key", "target_key", "within_window"]


def _digest(*parts: str | None) -> str:
    # JSON encoding keeps the parts unambiguous ("a|b","c" never collides with "a","b|c").
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def dedupe_key(source: Reference, target_registry: str, target: TargetSpec) -> str:
    """sha256 of (source digest, or the full source reference when no digest is known; target registry;
    target repository:tag). The source's tag is not part of it when the digest is known: the same
    bytes to the same place are the same import, whichever tag announced them."""
    what = source.digest or str(source)
    return _digest("v1", what, target_registry.lower(), target.repository, target.tag or "")


def target_key(target_registry: str, target: TargetSpec) -> str:
    """One key per target tag (or untagged repository): imports with the same key run one at a time."""
    return _digest("target-v1", target_registry.lower(), target.repository, target.tag or "")


def within_window(first_seen: datetime, now: datetime, window: timedelta) -> bool:
    """True while `now` is less than `window` after `first_seen` (both aware, or both naive UTC).
    A clock that went backwards still counts as inside the window."""
    if window <= timedelta(0):
        return False
    if (first_seen.tzinfo is None) != (now.tzinfo is None):
        first_seen, now = _aware(first_seen), _aware(now)
    return now - first_seen < window


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
