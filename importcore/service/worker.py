"""The queue worker: claim the job (optimistic concurrency), run the engine, record the outcome."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time
from collections.abc import Callable

import httpx

from ..observe import telemetry
from ..engine.imagecopy import ImportResult, Progress
from ..values.errors import DeadlineReached, ImporterError, LeaseLost, RegistryError, StaleJob
from ..engine.runner import cancel_sessions, run_request
from ..values.settings import Settings
from .api import request_from_summary
from .secretbox import SecretBox
from .store import FINISHED, Job, JobStatus, JobStore, iso, utcnow

__all__ = ["Worker", "open_sessions"]

log = logging.getLogger("importcore.worker")
PROGRESS_EVERY = 1.0  # seconds between progress writes to the table (each one renews the lease)
MAX_BACKOFF = 1800.0


class Worker:
    def __init__(self, settings: Settings, store: JobStore, box: SecretBox, *,
                 runner: Callable[..., ImportResult] = run_request,
                 requeue: Callable[[str], None] | None = None) -> None:
        self.settings, self.store, self.box = settings, store, box
        self._run_request = runner  # engine.runner.run_request; tests wrap it to stop or break a copy
        self._requeue = requeue  # sends a job's message now (the queue), for work that is due at once

    def backoff(self, attempts: int, exc: ImporterError) -> float:
        delay = min(MAX_BACKOFF, self.settings.retry_base_seconds * 2 ** max(0, attempts - 1))
        delay *= random.uniform(0.8, 1.2)  # jitter: a registry outage must not re-align all retries
        if isinstance(exc, RegistryError) and exc.retry_after:
            delay = max(delay, min(exc.retry_after, MAX_BACKOFF))
        return delay

    def process_job(self, job_id: str, *, dequeue_count: int = 1, max_dequeue: int = 5) -> str:
        """Handle one delivery of a job's message; returns what happened (for logs and tests)."""
        # The host cuts an invocation off at functionTimeout: start no blob transfer in its last
        # margin, so the attempt ends on its own terms and re-schedules itself.
        deadline = time.monotonic() + self.settings.function_timeout_seconds - self.settings.deadline_margin_seconds
        with telemetry.job_scope(job_id), telemetry.span("import", job_id=job_id, delivery=dequeue_count):
            outcome = self._claim_and_copy(job_id, dequeue_count=dequeue_count, max_dequeue=max_dequeue,
                                           deadline=deadline)
        telemetry.count("imports", outcome=outcome)
        return outcome

    def _claim_and_copy(self, job_id: str, *, dequeue_count: int, max_dequeue: int, deadline: float) -> str:
        job = self.store.get(job_id)
        if job is None:
            log.warning("job %s: no record; message dropped", job_id)
            return "missing"
        if job.status in FINISHED:
            return "done-already"
        now = utcnow()
        if job.status == JobStatus.RUNNING and job.lease_until and job.lease_until > iso(now):
            return "running-elsewhere"
        if job.status == JobStatus.QUEUED and job.retry_at and job.retry_at > iso(now):
            # A stray duplicate of an earlier message: the backoff (and any Retry-After) still holds;
            # the timer sends a fresh message once the retry is due.
            return "not-due"
        if job.failed_attempts >= self.settings.max_attempts:
            self._fail(job, job.error or {"code": "TooManyAttempts"}, note=f"gave up after {job.attempts} attempts")
            return "failed"
        if job.status == JobStatus.QUEUED and self._defer_behind_older(job, now):
            return "waiting"
        if job.status == JobStatus.RUNNING:
            # Its worker died (the lease expired) and the message came back before the timer did: the
            # claim below overwrites job.uploads, so cancel that attempt's sessions now or never.
            self.cancel_uploads(job)
        job.status, job.attempts = JobStatus.RUNNING, job.attempts + 1
        job.lease_until, job.next_attempt_at = iso(now + dt.timedelta(seconds=self.settings.lease_seconds)), None
        job.retry_at = None
        try:
            self.store.save(job)
        except StaleJob:
            return "claimed-elsewhere"
        log.info("job %s: attempt %d started", job.id, job.attempts)
        try:
            result = self._copy(job, deadline)
        except LeaseLost:
            log.warning("job %s: lease lost; another worker owns it now", job.id)
            return "lease-lost"
        except ImporterError as exc:
            return self._failed_attempt(job, exc)
        except Exception as exc:
            # A bug or a storage outage: record it, then let the host retry and poison the message.
            log.exception("job %s: unexpected error", job.id)
            error = {"code": "InternalError", "message": f"internal error ({exc.__class__.__name__})",
                     "retryable": dequeue_count < max_dequeue}
            self._settle(job, JobStatus.FAILED if dequeue_count >= max_dequeue else JobStatus.QUEUED, error=error)
            raise
        telemetry.count("import.bytes", result.bytes)
        self._settle(job, JobStatus.SUCCEEDED, result=result.to_dict())
        log.info("job %s: succeeded %s", job.id, result.digest)
        return "succeeded"

    def _defer_behind_older(self, job: Job, now: dt.datetime) -> bool:
        """Imports to one target tag run one at a time, oldest first: a newer digest for a tag whose
        import is still queued or running waits for it instead of racing it to the tag."""
        older = self.store.lane_ahead(job)
        if not older:
            return False
        wait = iso(now + dt.timedelta(seconds=max(5, self.settings.retry_base_seconds)))
        job.retry_at = job.next_attempt_at = wait
        job.progress = {"phase": "waiting", "behind": older[0].id}
        try:
            self.store.save(job)
        except StaleJob:
            pass
        log.info("job %s: waits for job %s on the same target tag", job.id, older[0].id)
        return True

    def _copy(self, job: Job, deadline: float) -> ImportResult:
        request = request_from_summary(job.request, self.box.open_credential(job.credential))
        lock = threading.Lock()
        sessions: dict[str, dict] = {}
        last = [time.monotonic()]  # the claim was just written: the first progress write can wait

        def flush(progress: dict | None = None) -> None:
            if progress is not None:
                job.progress = progress
            job.uploads = self._seal(list(sessions.values()))
            job.lease_until = iso(utcnow() + dt.timedelta(seconds=self.settings.lease_seconds))
            try:
                self.store.save(job)
            except StaleJob:
                raise LeaseLost(f"job {job.id}: the record changed during the copy") from None

        def on_progress(p: Progress) -> None:
            now = time.monotonic()
            with lock:
                job.progress = p.to_dict()  # the outcome's write carries the last one
                if now - last[0] >= PROGRESS_EVERY:
                    last[0] = now
                    flush()

        def on_session(repo: str, location: httpx.URL | None) -> None:
            with lock:
                key = f"{repo}#{threading.get_ident()}"
                if location is None:
                    sessions.pop(key, None)
                    return
                sessions[key] = {"repository": repo, "location": str(location)}
                flush()  # written before the upload streams, so a crash leaves it findable

        return self._run_request(request, self.settings, on_progress=on_progress, on_session=on_session,
                             deadline=deadline)

    def _seal(self, sessions: list[dict]) -> str | None:
        if not sessions:
            return None
        return self.box.seal({"sessions": sessions}) if self.box.available else _plain(sessions)

    def _failed_attempt(self, job: Job, exc: ImporterError) -> str:
        self.cancel_uploads(job)
        if isinstance(exc, DeadlineReached) and exc.copied:
            job.continued += 1  # progress was made: a continuation, not a failure (Job.continued)
        if exc.retryable and job.failed_attempts < self.settings.max_attempts:
            if isinstance(exc, DeadlineReached) and self._requeue is not None:
                # Out of time is no fault to back off from: the next invocation starts at once and
                # skips the blobs this one copied. The timer re-sends it only if this message is lost.
                self._settle(job, JobStatus.QUEUED, error=exc.to_dict(), due_now=True,
                             next_attempt_at=iso(utcnow() + dt.timedelta(seconds=self.settings.lease_seconds)))
                self._requeue(job.id)
                log.info("job %s: out of time after attempt %d; continued in a new invocation", job.id, job.attempts)
                return "continued"
            delay = 0.0 if isinstance(exc, DeadlineReached) else self.backoff(job.attempts, exc)
            self._settle(job, JobStatus.QUEUED, error=exc.to_dict(),
                         next_attempt_at=iso(utcnow() + dt.timedelta(seconds=delay)))
            log.warning("job %s: attempt %d failed, retry in %.0fs: %s", job.id, job.attempts, delay, exc.message)
            return "retry-scheduled"
        if exc.retryable:
            # Out of attempts: a Failed job must not say retryable, and should say why it stopped
            # (as the timer's give-up does).
            self._fail(job, exc.to_dict(), note=f"gave up after {job.attempts} attempts")
            log.warning("job %s: failed after %d attempts: %s", job.id, job.attempts, exc.message)
            return "failed"
        self._settle(job, JobStatus.FAILED, error=exc.to_dict())
        log.warning("job %s: failed: %s", job.id, exc.message)
        return "failed"

    def give_up(self, job: Job, error: dict) -> None:
        """Record Failed with `error` (the poison queue's verdict), whoever held the job."""
        self._settle(job, JobStatus.FAILED, error=dict(error, retryable=False))

    def _fail(self, job: Job, error: dict, *, note: str) -> None:
        error = dict(error, message=f"{note}: {error.get('message', '')}".rstrip(": "), retryable=False)
        self._settle(job, JobStatus.FAILED, error=error)

    def _settle(self, job: Job, status: JobStatus, *, error: dict | None = None, result: dict | None = None,
                next_attempt_at: str | None = None, due_now: bool = False) -> None:
        """Write the outcome; on a conflicting write, reload and apply it only if we still own the job."""
        attempts = job.attempts
        for _ in range(5):
            job.status, job.error, job.result = status, error, result
            job.lease_until, job.next_attempt_at = None, next_attempt_at
            job.retry_at = next_attempt_at if status == JobStatus.QUEUED and not due_now else None
            if status in FINISHED:
                job.uploads = None
            try:
                self.store.save(job)
                if status in FINISHED:
                    self.store.leave_lane(job)  # the next import of this tag may start
                return
            except StaleJob:
                fresh = self.store.get(job.id)
                if fresh is None or fresh.attempts != attempts or fresh.status in FINISHED:
                    return
                job = fresh

    def cancel_uploads(self, job: Job) -> int:
        sessions = open_sessions(self.box, job.uploads)
        if not sessions:
            return 0
        try:
            count = cancel_sessions(self.settings, job.request.get("targetRegistry", ""), sessions)
        except ImporterError as exc:
            log.warning("job %s: could not cancel upload sessions: %s", job.id, exc.message)
            return 0
        job.uploads = None
        return count


def _plain(sessions: list[dict]) -> str:
    # Without IMPORT_CREDENTIAL_KEY (local development only) upload sessions are stored as they are.
    return "plain:" + json.dumps({"sessions": sessions})


def open_sessions(box: SecretBox, sealed: str | None) -> list[dict]:
    if not sealed:
        return []
    if sealed.startswith("plain:"):
        return json.loads(sealed[6:])["sessions"]
    return (box.open(sealed) or {}).get("sessions", [])
