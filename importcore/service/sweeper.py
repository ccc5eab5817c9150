"""The timer's work: re-enqueue due retries, recover jobs of dead workers, cancel abandoned
uploads, expire old records. Idempotent: a second run right after the first changes nothing."""

from __future__ import annotations

import datetime as dt
import logging

from ..values.errors import StaleJob
from ..values.settings import Settings
from .jobqueue import JobQueue
from .store import JobStatus, JobStore, iso, utcnow
from .worker import Worker

__all__ = ["sweep"]

log = logging.getLogger("importcore.sweeper")
_FINISHED = f"(status eq '{JobStatus.FAILED}' or status eq '{JobStatus.SUCCEEDED}')"


def sweep(settings: Settings, store: JobStore, queue: JobQueue, worker: Worker,
          *, now: dt.datetime | None = None) -> dict[str, int]:
    now = now or utcnow()
    counts = {"recovered": 0, "requeued": 0, "failed": 0, "uploadsCancelled": 0, "expired": 0}
    # 1. Running past its lease: the worker died (host recycled, timeout). Make it retryable now.
    for job in store.query(f"status eq '{JobStatus.RUNNING}' and leaseUntil lt @now", now=iso(now)):
        counts["uploadsCancelled"] += worker.cancel_uploads(job)
        job.status, job.lease_until, job.next_attempt_at = JobStatus.QUEUED, None, iso(now)
        job.error = {"code": "WorkerLost", "message": f"attempt {job.attempts} stopped without finishing "
                     "(its lease expired); retrying", "retryable": True}
        try:
            store.save(job)
            counts["recovered"] += 1
        except StaleJob:
            continue
    # 2. Queued and due: re-enqueue, bounded by IMPORT_MAX_ATTEMPTS.
    for job in store.query(f"status eq '{JobStatus.QUEUED}' and nextAttemptAt le @now", now=iso(now)):
        if job.failed_attempts >= settings.max_attempts:
            last = (job.error or {}).get("message", "")
            job.status, job.next_attempt_at = JobStatus.FAILED, None
            job.error = dict(job.error or {}, retryable=False,
                             message=f"gave up after {job.attempts} attempts: {last}".rstrip(": "))
            try:
                store.save(job)
                counts["failed"] += 1
            except StaleJob:
                pass
            continue
        # Push the next check a lease away first: a second sweep must not enqueue it again.
        job.next_attempt_at = iso(now + dt.timedelta(seconds=settings.lease_seconds))
        job.retry_at = None  # due now: the message we send must not be taken for a stray duplicate
        try:
            store.save(job)
        except StaleJob:
            continue
        queue.send(job.id)
        counts["requeued"] += 1
    # 3. Finished jobs that still list upload sessions (the worker could not cancel them).
    for job in store.query(f"{_FINISHED} and uploads gt ''"):
        cancelled = worker.cancel_uploads(job)
        if job.uploads is None:
            try:
                store.save(job)
                counts["uploadsCancelled"] += cancelled
            except StaleJob:
                pass
    # 4. Expire finished records past their time to live.
    cutoff = iso(now - dt.timedelta(days=settings.job_ttl_days))
    for job in store.query(f"{_FINISHED} and updatedAt lt @cutoff", cutoff=cutoff):
        store.delete(job)
        counts["expired"] += 1
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts
