"""Scheduled sync in the function app, on the local Functions host against Azurite and real
registries: the sync timer runs a due rule by itself and only enqueues (the queue worker copies),
GET /api/syncs shows the last run and the next due time, POST /api/syncs/{rule} runs one now, a
due time runs once however many hosts tick, and a rules file that does not load is an answer."""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from pathlib import Path

from importcore.service.syncstore import SyncRecords
from importcore.values.settings import Settings
from tests.support.images import Pusher, push_image
from tests.support.skopeo import skopeo_digest

YEARLY = "0 0 0 1 1 *"  # due once a year: a test sees it run only as "never run yet"


def write_rules(tmp_path: Path, *rules: dict) -> str:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"version": 1, "rules": list(rules)}))
    return str(path)


def sync_rule(registry: str, repo: str, schedule: str = YEARLY, **sync) -> dict:
    return {"name": "app", "registry": registry, "repository": repo, "semver": ">=1.0",
            "target": "mirror/{repository}", "sync": {"schedule": schedule, **sync}}


def seed(source_registry, repo: str, tags) -> dict[str, str]:
    with Pusher(source_registry) as pusher:
        return {tag: push_image(pusher, repo, tag, layers=[256]).digest for tag in tags}


def syncs(app) -> dict:
    r = app.http.get("/api/syncs")
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_run(app, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        [rule] = syncs(app)["rules"]
        if rule["lastRun"] is not None:
            return rule
        assert time.monotonic() < deadline, "the sync timer did not run the rule"
        time.sleep(0.2)


def test_the_sync_timer_runs_a_due_rule_by_itself(app_host_factory, source_registry, target_registry, tmp_path,
                                                  unique_repo):
    digests = seed(source_registry, unique_repo, ("0.9.0", "1.0.0", "1.1.0", "1.2.0", "latest"))
    app = app_host_factory(IMPORT_MIRROR_RULES_FILE=write_rules(tmp_path, sync_rule(source_registry.host, unique_repo,
                                                                                    latest=2)),
                           IMPORT_SYNC_TIMER_SCHEDULE="*/1 * * * * *")  # the sync timer ticks every second
    # A rule that never ran is due at the first tick (then at each due time of its schedule).
    rule = wait_for_run(app)
    run = rule["lastRun"]
    assert (run["trigger"], run["planned"], run["unchanged"], run["enqueued"], run["deferred"], run["failed"],
            run["error"]) == ("schedule", 2, 0, 2, 0, 0, None)
    this_year = dt.datetime.now(dt.timezone.utc).year
    assert run["due"] == f"{this_year}-01-01T00:00:00.000000Z"
    assert rule["nextDue"] == f"{this_year + 1}-01-01T00:00:00.000000Z"
    assert (rule["schedule"], rule["latest"], rule["mode"]) == (YEARLY, 2, "Force")
    # The timer only enqueued: the queue worker copies, as for POST /api/imports.
    for job_id in run["jobs"]:
        assert app.wait_for(job_id)["status"] == "Succeeded"
    for tag in ("1.1.0", "1.2.0"):
        assert skopeo_digest(f"{target_registry.host}/mirror/{unique_repo}:{tag}") == digests[tag]
    with Pusher(target_registry) as pusher:
        assert sorted(pusher.tags(f"mirror/{unique_repo}")) == ["1.1.0", "1.2.0"]
    # Later ticks within the same due time do not run it again.
    app.host.run_timer("sync_mirrors")
    assert syncs(app)["rules"][0]["lastRun"]["startedAt"] == run["startedAt"]


def test_post_runs_a_rule_now_and_get_shows_the_run(app_host_factory, source_registry, target_registry, tmp_path,
                                                     unique_repo):
    digests = seed(source_registry, unique_repo, ("1.0.0", "1.1.0"))
    app = app_host_factory(IMPORT_MIRROR_RULES_FILE=write_rules(
        tmp_path, sync_rule(source_registry.host, unique_repo, "0 0 */6 * * *"),
        {"name": "events-only", "registry": "*.azurecr.io", "repository": "team/*"}))

    r = app.http.post("/api/syncs/app")
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["rule"], body["planned"], body["unchanged"], body["deferred"], body["failed"]) == ("app", 2, 0, [], [])
    assert sorted(j["targets"][0] for j in body["jobs"]) == [f"mirror/{unique_repo}:1.0.0", f"mirror/{unique_repo}:1.1.0"]
    assert {j["source"] for j in body["jobs"]} == {f"{source_registry.host}/{unique_repo}:{t}@{d}"
                                                   for t, d in digests.items()}
    for job in body["jobs"]:
        assert app.wait_for(job["id"])["status"] == "Succeeded"

    again = app.http.post("/api/syncs/app").json()
    assert (again["jobs"], again["planned"], again["unchanged"]) == ([], 0, 2)
    listing = syncs(app)
    [rule] = listing["rules"]  # only rules with sync are listed
    assert rule["name"] == "app" and rule["registry"] == source_registry.host
    last = rule["lastRun"]
    assert (last["trigger"], last["planned"], last["unchanged"], last["enqueued"], last["failed"]) == (
        "manual", 0, 2, 0, 0)
    now = dt.datetime.now(dt.timezone.utc)
    next_due = dt.datetime.strptime(rule["nextDue"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    assert next_due.hour % 6 == 0 and next_due.minute == 0 and next_due - now <= dt.timedelta(hours=6)

    missing = app.http.post("/api/syncs/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "NotFound", "target": "rule",
                                        "message": f"no sync rule named 'nope' in {tmp_path / 'rules.json'} "
                                                   "(sync rules: app)"}}


def test_a_due_time_runs_once_however_many_hosts_tick(app_host_factory, source_registry, tmp_path, unique_repo):
    seed(source_registry, unique_repo, ("1.0.0",))
    app = app_host_factory(IMPORT_MIRROR_RULES_FILE=write_rules(
        tmp_path, sync_rule(source_registry.host, unique_repo, "0 0 */6 * * *")))
    service = app.service()
    at = dt.datetime(2030, 5, 6, 13, 20, tzinfo=dt.timezone.utc)
    # Two hosts tick at the same due time at once: the lease (a conditional write of the rule's
    # entity) lets one of them run it.
    from importcore.service import ImportService

    other = ImportService(Settings.from_env())
    outcomes: list[dict] = []
    ticks = [threading.Thread(target=lambda s=s: outcomes.append(s.syncs.tick(now=at))) for s in (service, other)]
    for t in ticks:
        t.start()
    for t in ticks:
        t.join(60)
    assert sorted(o["ran"] for o in outcomes) == [0, 1], outcomes
    assert service.syncs.tick(now=at + dt.timedelta(hours=1))["ran"] == 0  # still the 12:00 due time
    assert other.syncs.tick(now=at + dt.timedelta(hours=5))["ran"] == 1  # 18:00


def test_claims_on_the_table_are_exclusive(azurite):
    import uuid

    settings = Settings.from_env({"AzureWebJobsStorage": azurite.connection_string,
                                  "IMPORT_JOBS_TABLE": f"claims{uuid.uuid4().hex[:10]}"})
    hosts = [SyncRecords.for_settings(settings) for _ in range(4)]
    won: list[bool] = []
    threads = [threading.Thread(target=lambda h=h: won.append(h.claim("app", "2030-01-01T00:00:00.000000Z")))
               for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(won) == [False, False, False, True]
    assert hosts[0].claim("app", "2029-12-31T00:00:00.000000Z") is False  # an earlier due time: done already
    assert hosts[1].claim("app", "2030-01-01T06:00:00.000000Z") is True
    hosts[2].record("app", {"planned": 1})
    assert hosts[3].states() == {"app": {"lastDue": "2030-01-01T06:00:00.000000Z", "lastRun": {"planned": 1}}}


def test_a_rules_file_that_does_not_load_is_every_sync_answer(app_host_factory, tmp_path, caplog):
    bad = tmp_path / "rules.json"
    bad.write_text(json.dumps({"version": 1, "rules": [
        {"name": "app", "registry": "registry.example.com", "repository": "x", "sync": {"schedule": "0 0 * * *"}}]}))
    app = app_host_factory(IMPORT_MIRROR_RULES_FILE=str(bad))
    expected = {"error": {"code": "RulesUnavailable", "target": "IMPORT_MIRROR_RULES_FILE",
                          "message": f"mirror rules file {bad}: rules[0].sync.schedule: '0 0 * * *': expected 6 "
                                     "NCRONTAB fields (sec min hour day month day-of-week), e.g. '0 0 */6 * * *', "
                                     "got 5 (rule 'app')"}}
    with caplog.at_level(logging.ERROR, logger="importcore.sync"):
        for _ in range(2):
            r = app.http.get("/api/syncs")
            assert (r.status_code, r.json()) == (500, expected)
            r = app.http.post("/api/syncs/app")
            assert (r.status_code, r.json()) == (500, expected)
            app.host.run_timer("sync_mirrors")  # quietly does nothing: no exception, no traceback
    said = [rec for rec in caplog.records if rec.name == "importcore.sync" and "cannot be loaded" in rec.getMessage()]
    assert len(said) == 1


def test_a_platform_rule_costs_no_get_once_the_app_knows_the_digest(app_host_factory, source_registry,
                                                                     target_registry, tmp_path, unique_repo):
    from tests.support.faultproxy import FaultProxy
    from tests.support.images import push_index

    with Pusher(source_registry) as pusher:
        index = push_index(pusher, unique_repo, "1.0")
    with FaultProxy(source_registry) as upstream:
        app = app_host_factory(IMPORT_MIRROR_RULES_FILE=write_rules(
            tmp_path, dict(sync_rule(upstream.host, unique_repo, "0 0 */6 * * *"), platform="linux/arm64")))
        [job] = app.http.post("/api/syncs/app").json()["jobs"]
        assert app.wait_for(job["id"])["status"] == "Succeeded"
        arm64 = index.children[1].digest
        assert skopeo_digest(f"{target_registry.host}/mirror/{unique_repo}:1.0") == arm64

        def gets_during_a_pass() -> tuple[int, dict]:
            before = upstream.count("GET", "/manifests/")
            body = app.http.post("/api/syncs/app").json()
            return upstream.count("GET", "/manifests/") - before, body

        gets, body = gets_during_a_pass()  # the index is read once to learn what arm64 is...
        assert (gets, body["unchanged"], body["jobs"]) == (1, 1, [])
        gets, body = gets_during_a_pass()  # ...and remembered in the table: no GET from then on
        assert (gets, body["unchanged"], body["jobs"]) == (0, 1, [])
