"""Mirror rules: which pushed tags to import, where to, and how (pure; the file is read once).

The rules file is JSON (path in the setting IMPORT_MIRROR_RULES_FILE), documented in docs/events.md:

    {"version": 1,
     "rules": [
       {"name": "nginx-stable", "registry": "docker.io", "repository": "library/nginx",
        "tags": "[0-9.]+", "semver": ">=1.24,<2", "target": "mirror/{repository}",
        "mode": "NoForce", "platforms": ["linux/amd64", "linux/arm64"], "credential": "dockerhub"}]}

Rules are tried in order; the first whose registry, repository and tag filters all match wins.
No match: None (acknowledge the event, import nothing).
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Collection
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path

from ..auth import Credential
from ..values.errors import UsageError
from ..values.media import Platform
from ..values.reference import DOCKER_HUB, Reference, TargetSpec, parse_digest, parse_registry, parse_target
from ..values.settings import Settings
from ..engine.request import ImportRequest, parse_referrer_types, parse_verify
from .events import PushEvent
from .semver import Range
from .sync import SyncSpec, parse_sync, select_tags

__all__ = ["MatchedImport", "MirrorRule", "MirrorRules", "RULES_FILE_SETTING"]

RULES_FILE_SETTING = "IMPORT_MIRROR_RULES_FILE"
MAX_RULES_FILE_BYTES = 1024 * 1024
PLACEHOLDERS = ("registry", "repository", "name", "tag")
MODES = {"noforce": "NoForce", "force": "Force"}
_FIELDS = ("name", "description", "registry", "repository", "tags", "excludeTags", "semver",
           "includePrerelease", "target", "targetRegistry", "mode", "platform", "platforms", "credential",
           "referrers", "referrersArtifactTypes", "verify", "sync")
_TOP_FIELDS = ("version", "description", "rules")
_CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
_GLOB_CHARS = frozenset("*?[")
_SAMPLE = {"registry": "registry.example.com", "repository": "team/app", "name": "app", "tag": "1.0.0"}


@dataclass(frozen=True, slots=True)
class MatchedImport:
    """What a matched event imports: a pure value; `to_request` makes the ImportRequest."""

    rule_index: int
    rule_name: str
    event: PushEvent
    source: Reference  # pinned by digest when the event had one; the tag is kept
    target: TargetSpec
    target_registry: str | None  # None: the app's IMPORT_TARGET_REGISTRY
    mode: str  # "NoForce" | "Force"
    platforms: tuple[Platform, ...]  # rule's `platform` or `platforms`; empty: every platform
    credential: str | None  # the NAME of a credential entry for the source; never a secret
    include_referrers: bool = False
    referrer_types: tuple[str, ...] = ()
    verify_keys: tuple[tuple[str, str], ...] = ()  # (name, PEM): public keys written in the rule
    verify_key_refs: tuple[str, ...] = ()  # names of keys the app holds (IMPORT_VERIFY_KEYS)

    @property
    def force(self) -> bool:
        return self.mode == "Force"

    def pinned(self, digest: str) -> MatchedImport:
        """The same import with the source pinned to `digest` (after resolving a tag at the registry)."""
        return replace(self, source=replace(self.source, digest=parse_digest(digest)))

    def resolved_target_registry(self, default: str | None) -> str:
        registry = self.target_registry or default
        if not registry:
            raise UsageError(f"mirror rule {self.rule_index} ({self.rule_name}): no target registry "
                             "(set targetRegistry in the rule or IMPORT_TARGET_REGISTRY)")
        return registry

    def to_request(self, default_target_registry: str | None, credential: Credential | None = None) -> ImportRequest:
        """The ImportRequest; `credential` is what the caller looked up by `self.credential`."""
        return ImportRequest(source=self.source, targets=(self.target,),
                             target_registry=self.resolved_target_registry(default_target_registry),
                             force=self.force, platforms=self.platforms, credential=credential,
                             include_referrers=self.include_referrers, referrer_types=self.referrer_types,
                             verify_keys=self.verify_keys, verify_key_refs=self.verify_key_refs)

    def dedupe_key(self, default_target_registry: str | None) -> str:
        from .dedupe import dedupe_key  # local: dedupe is the leaf module

        return dedupe_key(self.source, self.resolved_target_registry(default_target_registry), self.target)


@dataclass(frozen=True, slots=True)
class MirrorRule:
    index: int
    name: str
    registry: str  # exact host or glob, lowercase
    repository: str  # fnmatch glob
    tags: re.Pattern | None
    exclude_tags: re.Pattern | None
    semver: Range | None
    include_prerelease: bool
    target: str  # template
    target_registry: str | None
    mode: str
    platforms: tuple[Platform, ...]
    credential: str | None
    include_referrers: bool = False
    referrer_types: tuple[str, ...] = ()
    verify_keys: tuple[tuple[str, str], ...] = ()
    verify_key_refs: tuple[str, ...] = ()
    sync: SyncSpec | None = None  # polled on a schedule (docs/sync.md) as well as matched against events

    def matches(self, event: PushEvent) -> bool:
        if not fnmatchcase(event.registry.lower(), self.registry):
            return False
        if not fnmatchcase(event.repository, self.repository):
            return False
        return self.tag_matches(event.tag)

    def tag_matches(self, tag: str) -> bool:
        """Do `tags`, `excludeTags` and `semver` (with `includePrerelease`) let this tag through?"""
        if self.tags is not None and not self.tags.fullmatch(tag):
            return False
        if self.exclude_tags is not None and self.exclude_tags.fullmatch(tag):
            return False
        if self.semver is not None and not self.semver.contains(tag, include_prerelease=self.include_prerelease):
            return False
        return True

    def select_tags(self, tags: list[str]) -> list[str]:
        """The upstream tags a sync pass considers: every filter, then `sync.latest` (triggers/sync.py)."""
        return select_tags(tags, include=self.tags, exclude=self.exclude_tags, semver=self.semver,
                           include_prerelease=self.include_prerelease,
                           latest=self.sync.latest if self.sync else None)

    def render_target(self, event: PushEvent) -> TargetSpec:
        values = _values(event.registry, event.repository, event.tag)
        text = self.target.format(**values)
        try:
            return parse_target(text, default_tag=event.tag)
        except UsageError as exc:
            raise UsageError(f"mirror rule {self.index} ({self.name}): target {self.target!r} gives {text[:120]!r} "
                             f"for {event.reference}: {exc.message}", target=f"rules[{self.index}].target") from None

    def matched_import(self, event: PushEvent) -> MatchedImport:
        """What this rule imports for `event` (it is not checked that the rule matches it)."""
        return MatchedImport(rule_index=self.index, rule_name=self.name, event=event, source=event.reference,
                             target=self.render_target(event), target_registry=self.target_registry,
                             mode=self.mode, platforms=self.platforms, credential=self.credential,
                             include_referrers=self.include_referrers, referrer_types=self.referrer_types,
                             verify_keys=self.verify_keys, verify_key_refs=self.verify_key_refs)


@dataclass(frozen=True, slots=True)
class MirrorRules:
    rules: tuple[MirrorRule, ...] = ()
    source: str = "<none>"  # where they were loaded from, for messages

    def match(self, event: PushEvent) -> MatchedImport | None:
        """The first matching rule's import, or None. UsageError only when a matching rule's target
        template renders an invalid target for this event (a configuration error, named)."""
        for rule in self.rules:
            if rule.matches(event):
                return rule.matched_import(event)
        return None

    @property
    def sync_rules(self) -> tuple[MirrorRule, ...]:
        """The rules with a `sync` object, in file order."""
        return tuple(rule for rule in self.rules if rule.sync is not None)

    def sync_rule(self, name: str) -> MirrorRule:
        """The sync rule named `name`; UsageError (naming the known ones) when there is none."""
        for rule in self.sync_rules:
            if rule.name == name:
                return rule
        known = ", ".join(rule.name for rule in self.sync_rules) or "none"
        raise UsageError(f"no sync rule named {name[:80]!r} in {self.source} (sync rules: {known})", target="rule")

    def __len__(self) -> int:
        return len(self.rules)

    @classmethod
    def from_settings(cls, settings: Settings, *, key_names: Collection[str] | None = None) -> MirrorRules:
        """Load IMPORT_MIRROR_RULES_FILE (relative to the working directory, the function app root);
        unset: no rules, every event is acknowledged and ignored. `key_names`: the keys a rule's
        verify.keyRefs may name (IMPORT_VERIFY_KEYS); None: checked when an import runs instead."""
        path = settings.mirror_rules_file
        return cls.load(path, key_names=key_names) if path else cls()

    @classmethod
    def load(cls, path: str | os.PathLike, *, key_names: Collection[str] | None = None) -> MirrorRules:
        p = Path(path).expanduser()
        try:
            size = p.stat().st_size
            if size > MAX_RULES_FILE_BYTES:
                raise UsageError(f"mirror rules file {p}: {size} bytes, over the {MAX_RULES_FILE_BYTES}-byte limit")
            text = p.read_text(encoding="utf-8")
        except UsageError:
            raise
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read mirror rules file {p}: {exc.__class__.__name__}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        return cls.from_json(text, source=str(p), key_names=key_names)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "<string>",
                  key_names: Collection[str] | None = None) -> MirrorRules:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"mirror rules file {source}: not valid JSON at line {exc.lineno} column {exc.colno}: "
                             f"{exc.msg}") from None
        except (ValueError, TypeError, RecursionError) as exc:
            raise UsageError(f"mirror rules file {source}: not valid JSON ({exc.__class__.__name__})") from None
        return cls.from_data(data, source=source, key_names=key_names)

    @classmethod
    def from_data(cls, data: object, *, source: str = "<data>", key_names: Collection[str] | None = None
                  ) -> MirrorRules:
        def fail(where: str, message: str) -> UsageError:
            return UsageError(f"mirror rules file {source}: {where}: {message}", target=where)

        if not isinstance(data, dict):
            raise fail("top level", 'expected an object {"version": 1, "rules": [...]}')
        for key in data:
            if key not in _TOP_FIELDS:
                raise fail(str(key)[:40], f"unknown field (expected {', '.join(_TOP_FIELDS)})")
        if data.get("version", 1) != 1 or isinstance(data.get("version"), bool):
            raise fail("version", f"unsupported version {data.get('version')!r} (expected 1)")
        rules = data.get("rules")
        if not isinstance(rules, list):
            raise fail("rules", "required, an array of rules")
        parsed = tuple(_rule(i, raw, fail, key_names) for i, raw in enumerate(rules))
        seen: dict[str, int] = {}
        for rule in parsed:
            if rule.sync is not None:
                if rule.name in seen:
                    raise fail(f"rules[{rule.index}].name", f"{rule.name!r} is also the name of rules[{seen[rule.name]}]; "
                                                            "sync rules need distinct names")
                seen[rule.name] = rule.index
        return cls(parsed, source)


def _rule(i: int, raw: object, fail, key_names: Collection[str] | None = None) -> MirrorRule:
    where = f"rules[{i}]"
    if not isinstance(raw, dict):
        raise fail(where, "a rule must be an object")
    for key in raw:
        if key not in _FIELDS:
            raise fail(f"{where}.{str(key)[:40]}", f"unknown field (expected one of {', '.join(_FIELDS)})")

    def text(key: str) -> str | None:
        """An optional string field: None when absent; never empty."""
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise fail(f"{where}.{key}", f"expected a non-empty string, got {json.dumps(value)[:60]}")
        return value.strip()

    def required(key: str) -> str:
        value = text(key)
        if value is None:
            raise fail(f"{where}.{key}", "required")
        return value

    named = text("name")
    name = named or f"rule {i}"
    text("description")
    registry = _registry_pattern(required("registry"), f"{where}.registry", fail)
    repository = required("repository")
    if repository != repository.lower():
        raise fail(f"{where}.repository", f"{repository!r}: repository names are lowercase")
    if registry == DOCKER_HUB and "/" not in repository and not _GLOB_CHARS.intersection(repository):
        repository = f"library/{repository}"  # `nginx` on Docker Hub is library/nginx, as in references
    tags = _regex(text("tags"), f"{where}.tags", fail)
    exclude = _regex(text("excludeTags"), f"{where}.excludeTags", fail)
    semver = _parsed(Range.parse, text("semver"), f"{where}.semver", fail)
    include_prerelease = raw.get("includePrerelease", False)
    if not isinstance(include_prerelease, bool):
        raise fail(f"{where}.includePrerelease", "expected true or false")
    target = _template(text("target") or "{repository}", f"{where}.target", fail)
    target_registry = _parsed(parse_registry, text("targetRegistry"), f"{where}.targetRegistry", fail)
    # A sync rule mirrors: a tag re-pushed upstream (a patched base under the same `1.27`) must move
    # the mirror's tag too, so its mode defaults to Force (docs/sync.md); events follow the rule's mode.
    mode_text = text("mode") or ("Force" if raw.get("sync") is not None else "NoForce")
    mode = MODES.get(mode_text.lower())
    if mode is None:
        raise fail(f"{where}.mode", f"{mode_text!r}: expected NoForce or Force")
    platforms = _platforms(raw, where, text, fail)
    credential = raw.get("credential")
    if isinstance(credential, dict):
        raise fail(f"{where}.credential", "must be the NAME of a credential entry, never the secret itself")
    credential = text("credential")
    if credential is not None and not _CREDENTIAL_NAME.fullmatch(credential):
        raise fail(f"{where}.credential", f"{credential[:40]!r}: a credential entry name is 1-64 of letters, "
                                          "digits, '.', '_', '-'")
    referrers = raw.get("referrers", False)
    if not isinstance(referrers, bool):
        raise fail(f"{where}.referrers", "expected true or false")
    try:
        referrer_types = parse_referrer_types(raw.get("referrersArtifactTypes"), referrers,
                                              where=f"{where}.referrersArtifactTypes")
        keys, key_refs = parse_verify(raw.get("verify"), key_names, where=f"{where}.verify")
    except UsageError as exc:
        raise fail(exc.target or where, exc.message.removeprefix(f"{exc.target}: ")) from None
    sync = None
    if raw.get("sync") is not None:
        sync = parse_sync(raw["sync"], where=f"{where}.sync", fail=fail, name=named, registry=registry,
                          repository=repository)
    return MirrorRule(i, name, registry, repository, tags, exclude, semver, include_prerelease, target,
                      target_registry, mode, platforms, credential, referrers, referrer_types, keys, key_refs, sync)


def _platforms(raw: dict, where: str, text, fail) -> tuple[Platform, ...]:
    """`platform` (one) or `platforms` (a non-empty list: a new index of just those), never both."""
    one = _parsed(Platform.parse, text("platform"), f"{where}.platform", fail)
    many = raw.get("platforms")
    if many is None:
        return (one,) if one else ()
    if one is not None:
        raise fail(f"{where}.platforms", "give platform or platforms, not both")
    if not isinstance(many, list) or not many:
        raise fail(f"{where}.platforms", 'expected a non-empty array such as ["linux/amd64", "linux/arm64"]')
    parsed = []
    for j, item in enumerate(many):
        if not isinstance(item, str):
            raise fail(f"{where}.platforms[{j}]", f"expected a string, got {json.dumps(item)[:60]}")
        parsed.append(_parsed(Platform.parse, item.strip(), f"{where}.platforms[{j}]", fail))
    return tuple(dict.fromkeys(parsed))


def _parsed(parse, value: str | None, where: str, fail):
    """parse(value), or None when the field is absent; a parse error is reported against `where`."""
    if value is None:
        return None
    try:
        return parse(value)
    except UsageError as exc:
        raise fail(where, exc.message) from None


def _registry_pattern(value: str, where: str, fail) -> str:
    value = value.lower()
    if _GLOB_CHARS.intersection(value):
        return value
    try:
        return parse_registry(value)  # docker.io aliases, bare ACR names -> myacr.azurecr.io
    except UsageError as exc:
        raise fail(where, exc.message) from None


def _regex(value: str | None, where: str, fail) -> re.Pattern | None:
    if value is None:
        return None
    try:
        return re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        raise fail(where, f"invalid regular expression {value[:60]!r}: {exc}") from None


def _template(value: str, where: str, fail) -> str:
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise fail(where, f"invalid template {value[:60]!r}: {exc} (write literal braces as {{{{ and }}}})") from None
    for _, field_name, spec, conversion in parts:
        if field_name is None:
            continue
        if field_name not in PLACEHOLDERS:
            raise fail(where, f"unknown placeholder {{{field_name}}} (expected "
                              f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
        if spec or conversion:
            raise fail(where, f"placeholder {{{field_name}}} takes no format spec or conversion")
    sample = value.format(**_SAMPLE)
    try:
        parse_target(sample, default_tag=_SAMPLE["tag"])
    except UsageError as exc:
        raise fail(where, f"{value!r} does not make a valid repository[:tag] (e.g. {sample[:80]!r}): "
                          f"{exc.message}") from None
    return value


def _values(registry: str, repository: str, tag: str) -> dict[str, str]:
    # `{registry}` must be usable as a path component: `localhost:5000` -> `localhost-5000`.
    return {"registry": registry.lower().replace(":", "-"), "repository": repository,
            "name": repository.rsplit("/", 1)[-1], "tag": tag}
