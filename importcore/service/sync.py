"""Scheduled sync in the function app: the timer runs each due rule once (a lease per rule and due
time), enqueues the imports its pass planned (service/syncplan.py), and GET /api/syncs and
POST /api/syncs/{rule} list and start them. The timer never copies: the queue worker does."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable

from ..engine.request import ImportRequest
from ..triggers import MirrorRule, MirrorRules, target_key
from ..values.errors import ImporterError, UsageError
from ..values.settings import Settings
from .api import Reply, error_reply
from .store import iso, utcnow
from .syncplan import RulePass, SyncPlanner, import_request

__all__ = ["SyncService"]

log = logging.getLogger("importcore.sync")


class SyncService:
    """Runs sync rules for the app: the timer enqueues due rules, the API lists and starts them.

    The rules file is read once, on first use; when it cannot be read every answer carries the load
    error (and the log says it once)."""

    def __init__(self, service, *, rules: MirrorRules | None = None,
                 loader: Callable[[], MirrorRules] | None = None, records=None) -> None:
        from .syncstore import SyncRecords  # azure-data-tables only where the app uses it

        self.service = service
        self.settings: Settings = service.settings
        self._rules = rules
        self._loader = loader or functools.partial(MirrorRules.from_settings, self.settings)
        self._load_error: UsageError | None = None
        self._lock = threading.Lock()
        if records is None:
            records = SyncRecords.for_settings(self.settings, credential=getattr(service, "storage_identity", None))
        self.records = records

    def rules(self) -> MirrorRules:
        """The rules, loaded once; UsageError (the load error) every time when they cannot be."""
        with self._lock:
            if self._rules is None and self._load_error is None:
                try:
                    self._rules = self._loader()
                except ImporterError as exc:
                    self._load_error = UsageError(exc.message, target="IMPORT_MIRROR_RULES_FILE")
                    log.error("sync: the mirror rules cannot be loaded, no rule will sync: %s", exc.message)
            if self._load_error is not None:
                raise self._load_error
            assert self._rules is not None
            return self._rules

    def list(self, *, now: dt.datetime | None = None) -> Reply:
        try:
            rules = self.rules()
        except UsageError as exc:
            return error_reply(500, "RulesUnavailable", exc.message, exc.target)
        now = now or utcnow()
        states = self.records.states()
        out = []
        for rule in rules.sync_rules:
            assert rule.sync is not None
            state = states.get(rule.name, {})
            out.append({"name": rule.name, "registry": rule.registry, "repository": rule.repository,
                        "schedule": str(rule.sync.schedule), "latest": rule.sync.latest, "mode": rule.mode,
                        "lastRun": state.get("lastRun"),
                        "nextDue": iso(_next_due(rule, state.get("lastDue"), now))})
        return Reply(200, {"rulesFile": None if rules.source == "<none>" else rules.source, "rules": out})

    def run_now(self, name: str) -> Reply:
        """POST /api/syncs/{rule}: a pass now, outside the schedule; 202 with the jobs it enqueued."""
        try:
            rule = self.rules().sync_rule(name)
        except UsageError as exc:
            if exc.target == "rule":
                return error_reply(404, "NotFound", exc.message, "rule")
            return error_reply(500, "RulesUnavailable", exc.message, exc.target)
        result = self._run(rule, trigger="manual")
        body = {"rule": rule.name, "jobs": result.jobs, "planned": len(result.planned),
                "unchanged": len(result.unchanged), "deferred": result.deferred, "failed": result.failed,
                "error": result.error}
        return Reply(202, body, (("Location", "/api/syncs"),))

    def tick(self, *, now: dt.datetime | None = None) -> dict[str, int]:
        """The sync timer: each rule whose schedule is due runs once (the first host to claim the due
        time runs it); returns counts for the log."""
        try:
            rules = self.rules()
        except UsageError:
            return {"due": 0, "ran": 0}  # said once when loading; the timer keeps firing quietly
        now = now or utcnow()
        counts = {"due": 0, "ran": 0, "enqueued": 0}
        states = self.records.states() if rules.sync_rules else {}
        for rule in rules.sync_rules:
            assert rule.sync is not None
            due = _stamp(rule.sync.schedule.due_at(now))
            last = states.get(rule.name, {}).get("lastDue")
            if last is not None and last >= due:
                continue
            counts["due"] += 1
            try:
                if not self.records.claim(rule.name, due):
                    continue  # another host has it
                result = self._run(rule, trigger="schedule", due=due)
            except Exception:  # noqa: BLE001 - storage trouble with one rule must not starve the others
                log.exception("sync %s: the scheduled run failed", rule.name)
                continue
            counts["ran"] += 1
            counts["enqueued"] += len(result.jobs)
        if counts["ran"]:
            log.info("sync timer: %s", counts)
        return counts

    def _run(self, rule: MirrorRule, *, trigger: str, due: str | None = None) -> RulePass:
        started = utcnow()
        planner = SyncPlanner(self.settings, memory=self.records.memory())
        result = planner.plan(rule)
        self._enqueue(result)
        try:
            self.records.record(rule.name, result.record(trigger=trigger, started=started, due=due))
        except Exception:  # noqa: BLE001 - the jobs are queued; a lost record must not hide that
            log.exception("sync %s: could not write the run record", rule.name)
        log.info("sync %s (%s): %d planned, %d unchanged, %d enqueued, %d deferred, %d failed%s", rule.name, trigger,
                 len(result.planned), len(result.unchanged), len(result.jobs), len(result.deferred),
                 len(result.failed), f"; {result.error}" if result.error else "")
        return result

    def _enqueue(self, result: RulePass) -> None:
        default = self.settings.target_registry
        for matched in result.planned:
            try:
                request = import_request(matched, default)
                job, created = self._existing(request) or self.service.create_job(
                    request, dedupe=matched.dedupe_key(default))
            except ImporterError as exc:
                result.failed.append({"source": str(matched.source), "target": str(matched.target),
                                      "error": exc.message})
                continue
            result.jobs.append({"id": job.id, "status": job.status, "duplicate": not created,
                                "source": job.request["source"], "targets": job.request["targets"]})

    def _existing(self, request: ImportRequest):
        """An unfinished job for the same target tag and source digest (a pass while it still runs)."""
        for job in self.service.store.unfinished_for_target(target_key(request.target_registry, request.targets[0])):
            if job.request.get("source") == str(request.source):
                return job, False
        return None


def _next_due(rule: MirrorRule, last_due: str | None, now: dt.datetime) -> dt.datetime:
    """When the rule runs next: its current due time if that has not run yet, else the following one."""
    assert rule.sync is not None
    due = rule.sync.schedule.due_at(now)
    if last_due is None or last_due < _stamp(due):
        return due
    return rule.sync.schedule.next_after(now)


def _stamp(when: dt.datetime) -> str:
    """A due time as stored and compared (iso: fixed width, so text order is time order)."""
    return iso(when)
