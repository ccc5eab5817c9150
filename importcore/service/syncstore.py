"""Sync state in the job table: one entity per sync rule (its last due time and last run), and the
digest memory of rules with `platform` (service/syncplan.py)."""

from __future__ import annotations

import json
from typing import Any
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from ..values.settings import Settings
from .store import create_table_once, iso, open_table, utcnow

__all__ = ["SyncRecords"]

RULE_PARTITION = "sync"
MEMORY_PARTITION = "syncdigest"
_CLAIM_TRIES = 5


class SyncRecords:
    """Rule entities: PartitionKey "sync", RowKey the rule's name (sync rule names are key-safe:
    letters, digits, '.', '_', '-'), with `lastDue` (the due time last claimed) and `lastRun` (JSON)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._created = False

    @classmethod
    def for_settings(cls, settings: Settings, *, credential: Any = None) -> SyncRecords:
        return cls(open_table(settings.storage_connection, settings.jobs_table, account=settings.storage_account,
                              credential=credential))

    def _ensure(self) -> None:
        self._created = create_table_once(self._table, self._created)

    def claim(self, rule: str, due: str) -> bool:
        """Take due time `due` of `rule` for this host: True for exactly one caller per (rule, due).

        A conditional insert of the rule's entity, or an ETag-guarded update of its `lastDue` while that
        is older than `due`; a host that loses either race sees the winner's due time and backs off."""
        self._ensure()
        for _ in range(_CLAIM_TRIES):
            try:
                entity = self._table.get_entity(RULE_PARTITION, rule)
            except ResourceNotFoundError:
                try:
                    self._table.create_entity({"PartitionKey": RULE_PARTITION, "RowKey": rule, "lastDue": due,
                                               "claimedAt": iso(utcnow())})
                    return True
                except ResourceExistsError:
                    continue
            if (entity.get("lastDue") or "") >= due:
                return False
            entity["lastDue"], entity["claimedAt"] = due, iso(utcnow())
            try:
                self._table.update_entity(entity, mode=UpdateMode.MERGE, etag=entity.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
                return True
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
        return False

    def record(self, rule: str, run: dict) -> None:
        """Keep `run` as the rule's last run (whoever wrote last wins: runs are reports, not claims)."""
        self._ensure()
        self._table.upsert_entity({"PartitionKey": RULE_PARTITION, "RowKey": rule, "lastRun": json.dumps(run)},
                                  mode=UpdateMode.MERGE)

    def states(self) -> dict[str, dict]:
        """rule name -> {"lastDue": iso | None, "lastRun": dict | None}."""
        self._ensure()
        out: dict[str, dict] = {}
        for entity in self._table.query_entities("PartitionKey eq @p", parameters={"p": RULE_PARTITION}):
            raw = entity.get("lastRun")
            try:
                last_run = json.loads(raw) if raw else None
            except ValueError:
                last_run = None
            out[entity["RowKey"]] = {"lastDue": entity.get("lastDue"), "lastRun": last_run}
        return out

    def memory(self) -> TableMemory:
        return TableMemory(self)


class TableMemory:
    """service.syncplan.DigestMemory in the table: RowKey the target key (hex), the two digests."""

    def __init__(self, records: SyncRecords) -> None:
        self._records = records

    def recall(self, key: str) -> tuple[str, str] | None:
        self._records._ensure()
        try:
            entity = self._records._table.get_entity(MEMORY_PARTITION, key)
        except ResourceNotFoundError:
            return None
        return entity.get("source", ""), entity.get("target", "")

    def remember(self, key: str, source_digest: str, target_digest: str) -> None:
        self._records._ensure()
        self._records._table.upsert_entity({"PartitionKey": MEMORY_PARTITION, "RowKey": key,
                                            "source": source_digest, "target": target_digest},
                                           mode=UpdateMode.REPLACE)
