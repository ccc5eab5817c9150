"""Scheduled sync: poll the upstream of each rule with `sync`, import only what changed.

One pass over one rule:

1. repositories: the rule's exact `repository`, else `sync.repositories`, else the registry's catalog
   (`GET /v2/_catalog`, paginated) filtered by the glob;
2. tags: `GET /v2/<name>/tags/list` (paginated), then the rule's filters and `sync.latest`
   (triggers/sync.py);
3. change detection without pull quota: HEAD the source manifest and HEAD the target tag (a few at a
   time); equal digests = unchanged, nothing else is asked;
4. each changed or new tag becomes the same import as `POST /api/imports`, pinned to the digest the
   HEAD saw. The CLI runs them in-process (`run_locally`); the app enqueues jobs (`SyncService`).

Rate limits: every answer's `RateLimit-Remaining` is read; an import is planned only while that
number, less one pull per import already planned in this pass, stays at or above
IMPORT_SYNC_MIN_REMAINING. A 429 (after the retry layer's short waits) defers the rest of the rule to
the next pass; it never fails the rule.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Protocol

import httpx

from ..auth import load_credential
from ..engine import subset
from ..engine.request import ImportRequest
from ..engine.runner import policy_for, run_request, token_provider_for
from ..net.transport import make_http_client
from ..observe.redact import scrub
from ..registry.client import RegistryClient
from ..triggers import MatchedImport, MirrorRule, PushEvent, target_key
from ..values.errors import HostNotAllowed, ImporterError, NotFoundError, RegistryError, UsageError
from ..values.media import INDEX_TYPES
from ..values.settings import Settings
from .store import iso, utcnow

__all__ = ["DigestMemory", "RulePass", "SyncPlanner", "import_request", "run_locally"]

log = logging.getLogger("importcore.sync")
HEAD_CONCURRENCY = 8  # tags checked at once per rule: HEADs are small, registries throttle bursts
_GLOB_CHARS = frozenset("*?[")
MAX_RECORDED = 50  # entries of each list kept in a run record (the counts are exact)


class DigestMemory(Protocol):
    """For rules with `platform`/`platforms`: the target tag holds the platform's manifest (or a new
    index of just those platforms), not the upstream index, so equal digests cannot be compared directly. What an upstream digest was last found to
    give in the target is remembered here (the app keeps it in its table), so an unchanged pass still
    costs no GET."""

    def recall(self, key: str) -> tuple[str, str] | None: ...

    def remember(self, key: str, source_digest: str, target_digest: str) -> None: ...


class _Memory:
    """A DigestMemory for one process (the CLI)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, str]] = {}

    def recall(self, key: str) -> tuple[str, str] | None:
        return self._known.get(key)

    def remember(self, key: str, source_digest: str, target_digest: str) -> None:
        self._known[key] = (source_digest, target_digest)


@dataclass
class RulePass:
    """What one pass over one rule found; `planned` holds the imports to make."""

    rule: str
    planned: list[MatchedImport] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # target repository:tag
    deferred: list[dict] = field(default_factory=list)  # {"source", "reason"}
    failed: list[dict] = field(default_factory=list)  # {"source", "target", "error"}
    imported: list[dict] = field(default_factory=list)  # {"source", "target", "digest"} (CLI)
    jobs: list[dict] = field(default_factory=list)  # the app's jobs for `planned`
    error: str | None = None  # the rule as a whole could not be checked (catalog refused, no target...)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed

    def to_cli(self) -> dict:
        return {"name": self.rule, "planned": [_pair(m) for m in self.planned], "unchanged": len(self.unchanged),
                "imported": self.imported, "failed": self.failed, "deferred": self.deferred, "error": self.error}

    def record(self, *, trigger: str, started: dt.datetime, due: str | None = None) -> dict:
        """The run record kept per rule (GET /api/syncs): exact counts, the first entries of each list."""
        return {"trigger": trigger, "due": due, "startedAt": iso(started), "finishedAt": iso(utcnow()),
                "planned": len(self.planned), "unchanged": len(self.unchanged), "enqueued": len(self.jobs),
                "deferred": len(self.deferred), "failed": len(self.failed), "error": self.error,
                "jobs": [j["id"] for j in self.jobs][:MAX_RECORDED], "failures": self.failed[:MAX_RECORDED],
                "deferredSources": [d["source"] for d in self.deferred][:MAX_RECORDED]}


def _pair(matched: MatchedImport) -> dict:
    return {"source": str(matched.source), "target": str(matched.target)}


@dataclass
class _Candidate:
    order: int
    matched: MatchedImport  # source by tag, not yet pinned


class _Budget:
    """Pulls this pass may still plan from one source, from its last `RateLimit-Remaining`."""

    def __init__(self, source: RegistryClient, floor: int) -> None:
        self.source, self.floor = source, floor
        self.spent = 0  # pulls planned (or spent on a GET) in this pass
        self.stopped: str | None = None  # why the pass stops asking this source
        self.lock = threading.Lock()

    def allows_one_more(self) -> bool:
        """Called under the lock: may one more pull be planned?"""
        remaining = self.source.rate_remaining
        if remaining is not None and remaining - (self.spent + 1) < self.floor:
            self.stopped = (f"{self.source.registry} reports {remaining} pulls left (RateLimit-Remaining), "
                            f"{self.spent} already planned in this pass; IMPORT_SYNC_MIN_REMAINING is {self.floor}")
            return False
        return True


class SyncPlanner:
    """Plans passes; each pass builds its own registry clients with the app's host policy."""

    def __init__(self, settings: Settings, *, memory: DigestMemory | None = None,
                 http: httpx.Client | None = None) -> None:
        self.settings = settings
        self.memory: DigestMemory = memory or _Memory()
        self._http = http

    def plan(self, rule: MirrorRule) -> RulePass:
        result = RulePass(rule.name)
        secrets: list[str] = []
        try:
            self._plan(rule, result, secrets)
        except ImporterError as exc:
            result.error = exc.message
        _scrub(result, secrets)
        if result.error:
            log.warning("sync %s: %s", rule.name, result.error)
        return result

    def _plan(self, rule: MirrorRule, result: RulePass, secrets: list[str]) -> None:
        target_registry = rule.target_registry or self.settings.target_registry
        if not target_registry:
            raise UsageError("no target registry (set targetRegistry in the rule or IMPORT_TARGET_REGISTRY)")
        policy = policy_for(self.settings, target_registry)
        if rule.registry != target_registry:
            try:
                policy.check(rule.registry)
            except HostNotAllowed as exc:
                raise HostNotAllowed(f"source registry {rule.registry} is not allowed: {exc.message}") from None
        http = self._http or make_http_client(policy, max_connections=2 * HEAD_CONCURRENCY)
        try:
            source_cred = load_credential(self.settings.auth_file, rule.credential or rule.registry)
            target_cred = load_credential(self.settings.auth_file, target_registry)
            secrets += [*(source_cred.secrets if source_cred else ()), *(target_cred.secrets if target_cred else ())]
            source = RegistryClient(rule.registry, http=http, policy=policy, credential=source_cred, role="source",
                                    token_provider=token_provider_for(rule.registry, source_cred, self.settings, http))
            target = RegistryClient(target_registry, http=http, policy=policy, credential=target_cred,
                                    role="target",
                                    token_provider=token_provider_for(target_registry, target_cred, self.settings,
                                                                      http))
            budget = _Budget(source, self.settings.sync_min_remaining)
            candidates = self._candidates(rule, source, result, budget)
            self._check(rule, candidates, source, target, target_registry, result, budget)
        finally:
            if self._http is None:
                http.close()

    # -- which tags ------------------------------------------------------------------------

    def _repositories(self, rule: MirrorRule, source: RegistryClient) -> list[str]:
        if not _GLOB_CHARS.intersection(rule.repository):
            return [rule.repository]
        assert rule.sync is not None
        if rule.sync.repositories:
            return list(rule.sync.repositories)
        try:
            names = source.catalog()
        except RegistryError as exc:
            if exc.status == 429:
                raise
            raise RegistryError(
                f"{rule.registry} does not list its repositories (GET /v2/_catalog: {exc.message}); name them in "
                "sync.repositories", status=exc.status, retry_after=exc.retry_after) from None
        return sorted(name for name in names if fnmatchcase(name, rule.repository))

    def _candidates(self, rule: MirrorRule, source: RegistryClient, result: RulePass,
                    budget: _Budget) -> list[_Candidate]:
        try:
            repositories = self._repositories(rule, source)
        except RegistryError as exc:
            if exc.status != 429:
                raise
            result.deferred.append({"source": f"{rule.registry}/{rule.repository}", "reason": _deferral(exc)})
            budget.stopped = _deferral(exc)
            return []
        candidates: list[_Candidate] = []
        taken: dict[str, str] = {}  # target repository:tag -> the source tag that got it
        for repository in repositories:
            if budget.stopped:
                result.deferred.append({"source": f"{rule.registry}/{repository}", "reason": budget.stopped})
                continue
            try:
                tags = source.tags_list(repository)
            except RegistryError as exc:
                if exc.status == 429:
                    budget.stopped = _deferral(exc)
                    result.deferred.append({"source": f"{rule.registry}/{repository}", "reason": budget.stopped})
                    continue
                result.failed.append({"source": f"{rule.registry}/{repository}", "target": None,
                                      "error": exc.message})
                continue
            except ImporterError as exc:
                result.failed.append({"source": f"{rule.registry}/{repository}", "target": None,
                                      "error": exc.message})
                continue
            for tag in rule.select_tags(tags):
                try:
                    event = PushEvent.build(registry=rule.registry, repository=repository, tag=tag, digest=None,
                                            media_type=None, provider="sync", where="tag list")
                    matched = rule.matched_import(event)
                except UsageError as exc:
                    result.failed.append({"source": f"{rule.registry}/{repository}:{tag}", "target": None,
                                          "error": exc.message})
                    continue
                key = str(matched.target)
                if key in taken:
                    result.failed.append({"source": str(matched.source), "target": key,
                                          "error": f"the target tag is already {taken[key]}'s in this pass (the "
                                                   "rule's target maps several upstream tags to it)"})
                    continue
                taken[key] = str(matched.source)
                candidates.append(_Candidate(len(candidates), matched))
        return candidates

    # -- what changed ----------------------------------------------------------------------

    def _check(self, rule: MirrorRule, candidates: list[_Candidate], source: RegistryClient,
               target: RegistryClient, target_registry: str, result: RulePass, budget: _Budget) -> None:
        outcomes: dict[int, tuple[str, object]] = {}

        def one(candidate: _Candidate) -> None:
            outcomes[candidate.order] = self._one(rule, candidate, source, target, target_registry, budget, heads)

        with ThreadPoolExecutor(max_workers=HEAD_CONCURRENCY, thread_name_prefix="sync-head") as pool, \
                ThreadPoolExecutor(max_workers=HEAD_CONCURRENCY, thread_name_prefix="sync-target") as heads:
            list(pool.map(one, candidates))
        for candidate in candidates:
            kind, value = outcomes[candidate.order]
            if kind == "planned":
                assert isinstance(value, MatchedImport)
                result.planned.append(value)
            elif kind == "unchanged":
                result.unchanged.append(str(candidate.matched.target))
            elif kind == "deferred":
                result.deferred.append({"source": str(candidate.matched.source), "reason": value})
            elif kind == "failed":
                assert isinstance(value, dict)
                result.failed.append(value)

    def _one(self, rule: MirrorRule, candidate: _Candidate, source: RegistryClient, target: RegistryClient,
             target_registry: str, budget: _Budget, heads: ThreadPoolExecutor) -> tuple[str, object]:
        matched = candidate.matched
        ref, spec = matched.source, matched.target
        if budget.stopped:
            return "deferred", budget.stopped
        try:
            # The target tag's HEAD needs nothing from the upstream's: both go out at once, one round
            # trip per tag (the target's answer is dropped when the upstream's says gone or 429).
            mirrored = heads.submit(target.manifest_head, spec.repository, spec.tag) if spec.tag else None
            found = source.manifest_head(ref.repository, ref.tag or "latest")
            if found is None:
                return "gone", None  # deleted upstream between the listing and the HEAD
            digest, media_type = found[0], found[1].split(";")[0].strip()
            current = mirrored.result() if mirrored is not None else target.manifest_head(spec.repository, digest)
            if current is not None and current[0] == digest:
                return "unchanged", None
            if current is not None and matched.platforms and media_type in INDEX_TYPES:
                child = self._platform_digest(matched, digest, current[0], source, target_registry, budget)
                if child is None:
                    return "deferred", budget.stopped
                if child == current[0]:
                    return "unchanged", None
        except RegistryError as exc:
            if exc.status == 429:
                with budget.lock:
                    budget.stopped = budget.stopped or _deferral(exc)
                return "deferred", _deferral(exc)
            return "failed", {"source": str(ref), "target": str(spec), "error": exc.message}
        except ImporterError as exc:
            return "failed", {"source": str(ref), "target": str(spec), "error": exc.message}
        pinned = matched.pinned(digest)
        if current is not None and not matched.force:
            return "failed", {"source": str(pinned.source), "target": str(spec),
                              "error": f"target tag {target_registry}/{spec} points at {current[0]}, upstream at "
                                       f"{digest}; mode NoForce leaves it (set \"mode\": \"Force\" to follow "
                                       "moved upstream tags)"}
        with budget.lock:
            if budget.stopped or not budget.allows_one_more():
                return "deferred", budget.stopped
            budget.spent += 1
        return "planned", pinned

    def _platform_digest(self, matched: MatchedImport, digest: str, current: str, source: RegistryClient,
                         target_registry: str, budget: _Budget) -> str | None:
        """With `platform`/`platforms` the target tag holds what they pick out of the upstream index (the
        platform's manifest, or the subset index engine/subset.py writes, deterministically): the digest
        it has when current. Remembered from an earlier pass, else worked out from the index (one GET,
        counted against the budget; None when the budget has none left)."""
        key = target_key(target_registry, matched.target)
        if self.memory.recall(key) == (digest, current):
            return current
        with budget.lock:
            if budget.stopped or not budget.allows_one_more():
                return None
            budget.spent += 1
        index = source.manifest_get(matched.source.repository, digest)
        where = str(matched.source)
        try:
            picked = subset.select(index, matched.platforms, where=where)
        except NotFoundError:
            return digest  # the import will fail, saying which platforms the index offers
        if len(matched.platforms) == 1:
            expected = index.children[picked[0]].digest
        else:
            expected = subset.subset_index(index, picked, where=where).digest
        if expected == current:
            self.memory.remember(key, digest, current)
        return expected


def _scrub(result: RulePass, secrets: list[str]) -> None:
    """Messages quote registries' answers: a hostile one may echo the credentials it was sent."""
    if not secrets:
        return
    if result.error:
        result.error = scrub(result.error, secrets)
    for entry in result.failed:
        entry["error"] = scrub(entry["error"], secrets)
    for entry in result.deferred:
        entry["reason"] = scrub(entry["reason"], secrets)


def _deferral(exc: RegistryError) -> str:
    if exc.status != 429:
        return exc.message
    wait = f", retry after {exc.retry_after:.0f} s" if exc.retry_after is not None else ""
    return f"{exc.message.split(' [rate limit')[0]}{wait}"


# -- the CLI: import in this process ---------------------------------------------------------

def run_locally(result: RulePass, settings: Settings, *, memory: DigestMemory | None = None,
                runner: Callable[..., object] = run_request) -> RulePass:
    """Run the planned imports one after the other with the engine, as `python -m importcore import` does."""
    for matched in result.planned:
        request = import_request(matched, settings.target_registry)
        try:
            outcome = runner(request, settings)
        except ImporterError as exc:
            result.failed.append({"source": str(matched.source), "target": str(matched.target), "error": exc.message})
            continue
        digest = getattr(outcome, "digest", None)
        result.imported.append({"source": str(matched.source), "target": str(matched.target), "digest": digest})
        if memory is not None and matched.platforms and digest and matched.source.digest:
            memory.remember(target_key(request.target_registry, matched.target), matched.source.digest, digest)
    return result


def import_request(matched: MatchedImport, default_target_registry: str | None) -> ImportRequest:
    request = matched.to_request(default_target_registry)
    return replace(request, credential_ref=matched.credential) if matched.credential else request
