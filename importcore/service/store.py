"""Job records in Azure Table storage, with optimistic concurrency on every state change."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.core.credentials import TokenCredential
from azure.data.tables import TableClient, TableEntity, UpdateMode

from ..triggers.dedupe import within_window
from ..values.errors import StaleJob

__all__ = ["FINISHED", "Job", "JobStatus", "JobStore", "utcnow"]

PARTITION = "import"
DEDUPE_PARTITION = "dedupe"
_JSON_FIELDS = ("request", "progress", "result", "error")


class JobStatus(StrEnum):
    """A job's status as stored and shown (a str: it compares, formats and serialises as its value)."""

    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(when: dt.datetime) -> str:
    """A time as stored: UTC, fixed width, so that text order is time order."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _lane(target_key: str) -> str:
    return f"lane-{target_key}"


def _lane_row(job: Job) -> str:
    return f"{job.created_at}|{job.id}"  # creation order; the id breaks ties


@dataclass
class Job:
    id: str
    status: JobStatus = JobStatus.QUEUED
    attempts: int = 0
    # Attempts that ran out of the host's time after copying something (DeadlineReached): they are
    # continuations, not failures, and do not count toward IMPORT_MAX_ATTEMPTS.
    continued: int = 0
    request: dict = field(default_factory=dict)  # the validated request, without credentials
    credential: str | None = None  # sealed by SecretBox
    progress: dict | None = None
    result: dict | None = None
    error: dict | None = None
    uploads: str | None = None  # sealed list of open upload sessions [{repository, location}]
    created_at: str | None = None
    updated_at: str | None = None
    next_attempt_at: str | None = None  # when the timer should (re-)enqueue it
    retry_at: str | None = None  # a scheduled retry is not due before this (backoff, Retry-After)
    lease_until: str | None = None  # while Running: after this the worker is presumed dead
    dedupe_key: str | None = None
    target_key: str | None = None  # one per target tag: imports with the same key run one at a time
    etag: str | None = None

    @property
    def failed_attempts(self) -> int:
        return self.attempts - self.continued

    def view(self) -> dict:
        """What GET /api/imports/{id} shows: never credentials, never upload locations."""
        out = {"id": self.id, "status": self.status, "attempts": self.attempts, "progress": self.progress or {},
               "result": self.result, "error": self.error, "createdAt": self.created_at,
               "updatedAt": self.updated_at, "source": self.request.get("source"),
               "targets": self.request.get("targets", [])}
        if self.status == JobStatus.QUEUED and self.retry_at:
            out["nextAttemptAt"] = self.retry_at
        return out

    def to_entity(self) -> dict:
        entity = {"PartitionKey": PARTITION, "RowKey": self.id, "status": JobStatus(self.status).value,
                  "attempts": self.attempts, "continued": self.continued, "credential": self.credential,
                  "uploads": self.uploads, "createdAt": self.created_at, "updatedAt": self.updated_at,
                  "nextAttemptAt": self.next_attempt_at, "retryAt": self.retry_at, "leaseUntil": self.lease_until,
                  "dedupeKey": self.dedupe_key, "targetKey": self.target_key}
        for name in _JSON_FIELDS:
            value = getattr(self, name)
            entity[name] = json.dumps(value) if value is not None else None
        return {k: v for k, v in entity.items() if v is not None}

    @classmethod
    def from_entity(cls, entity: TableEntity) -> Job:
        job = cls(id=entity["RowKey"], status=JobStatus(entity.get("status", JobStatus.QUEUED)),
                  attempts=int(entity.get("attempts", 0)),
                  continued=int(entity.get("continued", 0)), credential=entity.get("credential"),
                  uploads=entity.get("uploads"),
                  created_at=entity.get("createdAt"), updated_at=entity.get("updatedAt"),
                  next_attempt_at=entity.get("nextAttemptAt"), retry_at=entity.get("retryAt"), lease_until=entity.get("leaseUntil"),
                  dedupe_key=entity.get("dedupeKey"), target_key=entity.get("targetKey"), etag=entity.metadata.get("etag"))
        for name in _JSON_FIELDS:
            raw = entity.get(name)
            setattr(job, name, json.loads(raw) if raw else None if name != "request" else {})
        return job


def open_table(connection_string: str | None, table: str, *, account: str | None = None,
               credential: TokenCredential | None = None) -> TableClient:
    """The job table: by connection string (Azurite, account keys) or by identity (Azure: shared keys
    off, the app's managed identity)."""
    if connection_string:
        return TableClient.from_connection_string(connection_string, table_name=table)
    return TableClient(endpoint=f"https://{account}.table.core.windows.net", table_name=table, credential=credential)


def create_table_once(table: TableClient, created: bool) -> bool:
    """Create `table` unless this process already did (or found it); returns True, the new `created`."""
    if not created:
        try:
            table.create_table()
        except ResourceExistsError:
            pass
    return True


class JobStore:
    def __init__(self, connection_string: str | None, table: str, *, account: str | None = None,
                 credential: TokenCredential | None = None) -> None:
        self._table = open_table(connection_string, table, account=account, credential=credential)
        self._created = False

    def _ensure(self) -> None:
        self._created = create_table_once(self._table, self._created)

    def create(self, job: Job) -> Job:
        """Insert a new record; StaleJob (nothing left behind) when a record with this id exists."""
        self._ensure()
        job.created_at = job.updated_at = iso(utcnow())
        lane = (_lane(job.target_key), _lane_row(job)) if job.target_key else None
        if lane:
            # Written first: a job is never runnable without its place in the lane of its target tag.
            self._table.create_entity({"PartitionKey": lane[0], "RowKey": lane[1], "jobId": job.id})
        try:
            meta = self._table.create_entity(job.to_entity())
        except ResourceExistsError:
            if lane:
                self._leave_lane(*lane)  # the record that exists has its own row in the lane
            raise StaleJob(job.id) from None
        job.etag = meta.get("etag")
        return job

    def lane_ahead(self, job: Job) -> list[Job]:
        """Unfinished jobs created before `job` for the same target tag, oldest first.

        One partition per target tag (a point range query, not a scan of every job record); rows of
        finished or deleted jobs are removed as they are met.
        """
        if not job.target_key:
            return []
        ahead = []
        rows = self._table.query_entities("PartitionKey eq @p and RowKey lt @r",
                                          parameters={"p": _lane(job.target_key), "r": _lane_row(job)})
        for row in rows:
            if row["jobId"] == job.id:
                continue  # a row a duplicate delivery wrote for this very job, about to be removed
            other = self.get(row["jobId"])
            if other is None or other.status in FINISHED:
                self._leave_lane(row["PartitionKey"], row["RowKey"])
            else:
                ahead.append(other)
        return ahead

    def unfinished_for_target(self, target_key: str) -> list[Job]:
        """Unfinished jobs for one target tag (its lane), oldest first."""
        self._ensure()
        jobs = []
        for row in self._table.query_entities("PartitionKey eq @p", parameters={"p": _lane(target_key)}):
            job = self.get(row["jobId"])
            if job is not None and job.status not in ("Succeeded", "Failed"):
                jobs.append(job)
        return jobs

    def leave_lane(self, job: Job) -> None:
        if job.target_key and job.created_at:
            self._leave_lane(_lane(job.target_key), _lane_row(job))

    def _leave_lane(self, partition: str, row: str) -> None:
        try:
            self._table.delete_entity(partition, row)
        except ResourceNotFoundError:
            pass

    def get(self, job_id: str) -> Job | None:
        self._ensure()
        try:
            return Job.from_entity(self._table.get_entity(PARTITION, job_id))
        except ResourceNotFoundError:
            return None

    def save(self, job: Job) -> Job:
        """Replace the record if nobody changed it since it was read; else StaleJob."""
        job.updated_at = iso(utcnow())
        try:
            meta = self._table.update_entity(job.to_entity(), mode=UpdateMode.REPLACE, etag=job.etag,
                                             match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            raise StaleJob(f"job {job.id}: the record changed since it was read", target=job.id) from None
        job.etag = meta.get("etag")
        return job

    def delete(self, job: Job) -> None:
        self.leave_lane(job)
        try:
            self._table.delete_entity(PARTITION, job.id, etag=job.etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            pass

    def claim_dedupe(self, key: str, job_id: str, window: dt.timedelta) -> str:
        """The id of the one job `key` stands for: `job_id` when the key is new or was last claimed more
        than `window` ago, else the id claimed before.

        One marker row per key: insert-if-absent, or an etag-guarded takeover once it is older than
        the window, so concurrent deliveries of one event agree on one id. The delivery that claimed it
        may not have written the job's record yet (or may have died first): the caller inserts the
        record under this id if it is absent, so exactly one of them creates the job."""
        self._ensure()
        now = utcnow()
        marker = {"PartitionKey": DEDUPE_PARTITION, "RowKey": key, "jobId": job_id, "firstSeen": iso(now)}
        for _ in range(5):  # each retry means another delivery changed the marker in between
            try:
                self._table.create_entity(marker)
                return job_id
            except ResourceExistsError:
                pass
            try:
                existing = self._table.get_entity(DEDUPE_PARTITION, key)
            except ResourceNotFoundError:
                continue
            first = dt.datetime.strptime(existing["firstSeen"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
            if within_window(first, now, window):
                return existing["jobId"]
            try:
                self._table.update_entity(marker, mode=UpdateMode.REPLACE, etag=existing.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
                return job_id
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
        return job_id

    def query(self, query_filter: str, **parameters: object) -> Iterator[Job]:
        self._ensure()
        # azure-data-tables substitutes @name only in words split on single spaces: "(... @now)" would
        # look up "now)" and raise KeyError, so the parentheses stand apart from the filter.
        for entity in self._table.query_entities(f"PartitionKey eq '{PARTITION}' and ( {query_filter} )",
                                                 parameters=parameters):
            yield Job.from_entity(entity)
