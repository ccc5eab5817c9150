"""Scheduled sync of mirror rules, the pure part: the `sync` object of a rule, its schedule, and which
upstream tags a pass considers (filters, then the newest N by semver).

    "sync": {"schedule": "0 0 */6 * * *", "latest": 3, "repositories": ["library/nginx"]}

Nothing here talks to a registry; service/syncplan.py lists tags and compares digests; service/sync.py enqueues.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from croniter import croniter

from ..values.errors import UsageError
from ..values.reference import DOCKER_HUB, Reference
from .semver import Range, parse_version

__all__ = ["SYNC_FIELDS", "Schedule", "SyncSpec", "parse_sync", "select_tags", "sync_rule_name"]

SYNC_FIELDS = ("schedule", "latest", "repositories")
MAX_REPOSITORIES = 1000
_GLOB_CHARS = frozenset("*?[")
# A sync rule's name keys its run record and is a URL path segment (POST /api/syncs/{name}).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)

Fail = Callable[[str, str], Exception]


class Schedule:
    """A six-field NCRONTAB expression (`sec min hour day month day-of-week`), evaluated in UTC, with
    the Functions host's semantics: day-of-month and day-of-week both restricted must both hold."""

    def __init__(self, expression: str) -> None:
        text = expression.strip() if isinstance(expression, str) else ""
        fields = text.split()
        if len(fields) != 6:
            raise UsageError(f"{expression!r}: expected 6 NCRONTAB fields (sec min hour day month day-of-week), "
                             f"e.g. '0 0 */6 * * *', got {len(fields)}")
        try:
            valid = croniter.is_valid(text, second_at_beginning=True)
        except (ValueError, TypeError, KeyError):  # croniter raises odd types for odd input
            valid = False
        if not valid:
            raise UsageError(f"{expression!r} is not a valid NCRONTAB expression")
        self.expression = text

    def _iter(self, start: dt.datetime) -> croniter:
        return croniter(self.expression, start, ret_type=dt.datetime, second_at_beginning=True, day_or=False)

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first occurrence strictly after `moment` (aware, UTC)."""
        return self._iter(_utc(moment)).get_next()

    def due_at(self, moment: dt.datetime) -> dt.datetime:
        """The latest occurrence at or before `moment`: the due time a tick at `moment` runs."""
        moment = _utc(moment)
        previous = self._iter(moment).get_prev()
        following = self._iter(previous).get_next()
        return following if following <= moment else previous

    def __str__(self) -> str:
        return self.expression


@dataclass(frozen=True, slots=True)
class SyncSpec:
    """A rule's `sync` object: when it runs, how many versions it keeps, which repositories."""

    schedule: Schedule
    latest: int | None = None
    repositories: tuple[str, ...] | None = None  # explicit list for a glob `repository`


def sync_rule_name(name: str | None) -> bool:
    """Is `name` usable as a sync rule's name (its record's key and its URL segment)?"""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def parse_sync(raw: object, *, where: str, fail: Fail, name: str | None, registry: str,
               repository: str) -> SyncSpec:
    """The `sync` object of rule `where`; every error names the field (`rules[2].sync.latest`) and the rule."""
    def err(field: str, message: str) -> Exception:  # the caller's `fail`, naming the rule too
        return fail(field, f"{message} (rule {name!r})" if name else message)

    if not isinstance(raw, dict):
        raise err(where, 'expected an object such as {"schedule": "0 0 */6 * * *"}')
    for key in raw:
        if key not in SYNC_FIELDS:
            raise err(f"{where}.{str(key)[:40]}", f"unknown field (expected one of {', '.join(SYNC_FIELDS)})")
    rule = where.rsplit(".", 1)[0]
    if not sync_rule_name(name):
        raise err(f"{rule}.name", "a rule with sync needs a name of 1-64 letters, digits, '.', '_', '-' "
                                   "(it names the rule's runs and its URL /api/syncs/{name})")
    if _GLOB_CHARS.intersection(registry):
        raise err(f"{rule}.registry", f"{registry!r}: a rule with sync polls one registry; give its exact host, "
                                       "not a glob")
    schedule_text = raw.get("schedule")
    if not isinstance(schedule_text, str) or not schedule_text.strip():
        raise err(f"{where}.schedule", "required, an NCRONTAB expression such as '0 0 */6 * * *' (UTC)")
    try:
        schedule = Schedule(schedule_text)
    except UsageError as exc:
        raise err(f"{where}.schedule", exc.message) from None
    latest = raw.get("latest")
    if latest is not None and (not isinstance(latest, int) or isinstance(latest, bool) or latest < 1):
        raise err(f"{where}.latest", f"expected a whole number of at least 1, got {str(latest)[:40]}")
    repositories = _repositories(raw.get("repositories"), where=f"{where}.repositories", fail=err,
                                 registry=registry, pattern=repository)
    return SyncSpec(schedule, latest, repositories)


def _repositories(raw: object, *, where: str, fail: Fail, registry: str, pattern: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise fail(where, "expected a non-empty array of repository names")
    if len(raw) > MAX_REPOSITORIES:
        raise fail(where, f"{len(raw)} entries; at most {MAX_REPOSITORIES}")
    out: list[str] = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, str) or not item.strip() or _GLOB_CHARS.intersection(item):
            raise fail(here, "expected a repository name (no glob)")
        name = item.strip()
        if registry == DOCKER_HUB and "/" not in name:
            name = f"library/{name}"  # as in references and in the rule's `repository`
        try:
            Reference.parse(f"{registry}/{name}", default_registry=None)
        except UsageError as exc:
            raise fail(here, exc.message) from None
        if not fnmatchcase(name, pattern):
            raise fail(here, f"{name!r} does not match the rule's repository {pattern!r}")
        out.append(name)
    return tuple(dict.fromkeys(out))


def select_tags(tags: Iterable[str], *, include: re.Pattern | None, exclude: re.Pattern | None,
                semver: Range | None, include_prerelease: bool, latest: int | None) -> list[str]:
    """The tags a pass considers, in the order it checks them.

    Every filter of the rule applies (`tags`, `excludeTags`, `semver` with `includePrerelease`). With
    `latest` N, only the N newest by semver precedence remain; tags that are not versions (`latest`,
    `alpine`) never count as one of them, nor do pre-releases unless `includePrerelease`. The result is
    newest version first, then other tags by name, so a pass cut short by the rate-limit budget has
    checked the newest first.
    """
    passing = []
    for tag in dict.fromkeys(tags):
        if include is not None and not include.fullmatch(tag):
            continue
        if exclude is not None and exclude.fullmatch(tag):
            continue
        if semver is not None and not semver.contains(tag, include_prerelease=include_prerelease):
            continue
        passing.append(tag)
    versions = []
    others = []
    for tag in passing:
        version = parse_version(tag)
        if version is None or (version.prerelease and not include_prerelease):
            others.append(tag)
        else:
            versions.append((version.key, tag))
    # Newest first; among equal versions (`1.2` and `1.2.0`) the tag name decides, for a stable order.
    ordered = [tag for _, tag in sorted(versions, key=lambda kv: (kv[0], kv[1]), reverse=True)]
    if latest is not None:
        return ordered[:latest]
    return ordered + sorted(others)


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)
