"""The service: submit and look up imports, process queue messages, sweep on a timer.

function_app.py calls these methods (and .intake's, .syncs', .arm's); nothing here knows azure.functions.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from functools import cached_property
from typing import cast

from azure.core.credentials import TokenCredential as AzureTokenCredential

from ..values.errors import HostNotAllowed, ImporterError, StaleJob, TransportError, UsageError
from ..engine.request import ImportRequest
from ..engine.runner import policy_for
from ..values.settings import Settings
from ..triggers import target_key
from .api import Reply, error_reply, parse_import_body, request_summary
from .armapi import ArmApi
from .intake import EventIntake
from .jobqueue import JobQueue, decode_message
from .secretbox import SecretBox
from .store import FINISHED, Job, JobStore, iso, utcnow
from .sweeper import sweep
from .sync import SyncService
from .worker import Worker

__all__ = ["ImportService", "Reply"]

log = logging.getLogger("importcore.service")
LOST_MESSAGE_GRACE = dt.timedelta(minutes=5)  # if the message never arrives, the timer re-sends it


class ImportService:
    def __init__(self, settings: Settings, *, store: JobStore | None = None, queue: JobQueue | None = None) -> None:
        if not settings.storage_connection and not settings.storage_account:
            raise ImporterError("storage is not configured: set AzureWebJobsStorage or AzureWebJobsStorage__accountName")
        self.settings = settings
        identity: AzureTokenCredential | None = None
        if not settings.storage_connection:
            from ..auth.identity import app_identity  # azure-identity only where it is used

            # Its tokens are auth.acr.AccessToken, azure-core's AccessToken by another name (the same
            # two fields, token and expires_on, which is all the storage SDKs read).
            identity = cast(AzureTokenCredential, app_identity(settings.managed_identity_client_id))
        self.storage_identity = identity  # None with a connection string
        account = settings.storage_account
        self.store = store or JobStore(settings.storage_connection, settings.jobs_table, account=account,
                                       credential=identity)
        self.queue = queue or JobQueue(settings.storage_connection, settings.queue_name, account=account,
                                       credential=identity)
        self.box = SecretBox(settings.credential_key)
        self.dedupe_window = dt.timedelta(seconds=settings.dedupe_window_seconds)
        self.worker = Worker(settings, self.store, self.box, requeue=self.queue.send)

    def submit(self, body: bytes) -> Reply:
        """Validate, record (Queued), enqueue; 202 with Location, or 400 naming the bad field."""
        accepted = self.accept(body, self.settings.target_registry)
        if isinstance(accepted, Reply):
            return accepted
        return Reply(202, accepted.view(), (("Location", f"/api/imports/{accepted.id}"),))

    def accept(self, body: bytes, target_registry: str | None) -> Job | Reply:
        """An ImportImage body into `target_registry` (one the settings name: it is trusted) -> the
        Queued job, or the 400 Reply naming the bad field. POST /api/imports and the ARM route."""
        try:
            request = parse_import_body(body, target_registry=target_registry,
                                        policy=policy_for(self.settings, target_registry),
                                        key_names=[name for name, _ in self.settings.verify_keys])
            sealed = self.box.seal_credential(request.credential)
        except (UsageError, HostNotAllowed, TransportError) as exc:
            # TransportError: the source host does not resolve, so the host policy cannot be checked;
            # answering now (naming the field) beats a 500 or a job that fails minutes later.
            return error_reply(400, exc.code, exc.message, exc.target)
        job, _ = self.create_job(request, sealed_credential=sealed)
        return job

    def create_job(self, request: ImportRequest, *, sealed_credential: str | None = None,
                   dedupe: str | None = None) -> tuple[Job, bool]:
        """Record a Queued job and enqueue it; with `dedupe`, a fresh duplicate returns the first job
        instead (created False)."""
        job_id = str(uuid.uuid4())
        if dedupe and self.dedupe_window > dt.timedelta(0):
            job_id = self.store.claim_dedupe(dedupe, job_id, self.dedupe_window)  # ours, or the first one's
        first = request.targets[0]
        job = Job(id=job_id, request=request_summary(request), credential=sealed_credential,
                  next_attempt_at=iso(utcnow() + LOST_MESSAGE_GRACE), dedupe_key=dedupe,
                  target_key=target_key(request.target_registry, first))
        try:
            self.store.create(job)  # insert-if-absent: of the deliveries sharing this id, one creates the job
        except StaleJob:
            return self.store.get(job_id) or job, False
        self.queue.send(job.id)
        log.info("job %s: queued %s", job.id, job.request["source"])
        return job, True

    def status(self, job_id: str) -> Reply:
        try:
            uuid.UUID(job_id)
        except (ValueError, TypeError, AttributeError):
            return error_reply(404, "NotFound", "no import with this id", "id")
        job = self.store.get(job_id)
        if job is None:
            return error_reply(404, "NotFound", f"no import with id {job_id}", "id")
        return Reply(200, job.view())

    def process_message(self, message: str, *, dequeue_count: int = 1, max_dequeue: int = 5) -> str:
        """One delivery of a queue message: decode it, then the worker handles the job it names."""
        job_id = decode_message(message)
        if job_id is None:
            log.warning("dropped a queue message that is not an import message")
            return "invalid"
        return self.worker.process_job(job_id, dequeue_count=dequeue_count, max_dequeue=max_dequeue)

    def poisoned(self, message: str) -> None:
        """The host gave up on a message: make sure the record says Failed with the last error."""
        job_id = decode_message(message)
        job = self.store.get(job_id) if job_id else None
        if job is not None and job.status not in FINISHED:
            # Without a recorded error the status would show a code but no message: say what happened.
            gave_up = {"code": "InternalError", "message": "every delivery of this import's queue message failed; "
                       f"the host moved it to the poison queue ({job.attempts} attempts started)"}
            self.worker.give_up(job, job.error or gave_up)

    @cached_property
    def arm(self) -> ArmApi:
        """The ARM ImportImage routes (what Azure SDKs call)."""
        return ArmApi(self)

    @cached_property
    def intake(self) -> EventIntake:
        """Event Grid and webhooks; the rules file is read once, on the first event."""
        return EventIntake(self)

    @cached_property
    def syncs(self) -> SyncService:
        """Scheduled sync of the mirror rules with `sync` (timer, GET /api/syncs, POST /api/syncs/{rule})."""
        return SyncService(self)

    def sweep(self) -> dict[str, int]:
        return sweep(self.settings, self.store, self.queue, self.worker)
