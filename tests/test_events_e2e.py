"""Events into imports, end to end: a real Distribution registry's own notifications, Event Grid and
webhook deliveries through the real function_app on the local host, against Azurite."""

from __future__ import annotations

import datetime as dt
import functools
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from importcore.service.sweeper import sweep
from tests.support.images import Pusher, push_index
from tests.support.skopeo import skopeo_copy, skopeo_digest

SECRET = "s3cret-webhook-value-0123456789"
FIXTURES = Path(__file__).parent / "fixtures" / "events"


def write_rules(tmp_path: Path, registry: str, repository: str = "**", target: str = "mirror/{repository}",
                mode: str = "Force") -> Path:
    rules = {"version": 1, "rules": [{"name": "all", "registry": registry, "repository": repository,
                                      "target": target, "mode": mode}]}
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    return path


def events_env(tmp_path: Path, registry: str, **extra: str) -> dict:
    return {"IMPORT_MIRROR_RULES_FILE": str(write_rules(tmp_path, registry)),
            "IMPORT_WEBHOOK_SECRET_DISTRIBUTION": SECRET, "IMPORT_EVENTGRID_SECRET": SECRET,
            "IMPORT_WEBHOOK_SECRET_GITHUB": SECRET, **extra}


def jobs_in(app) -> list[dict]:
    return [e for e in app.entities() if e["PartitionKey"] == "import"]


def wait_jobs(app, count: int, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = jobs_in(app)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_registry_notifications_import_a_pushed_multiarch_image(app_host_factory, registry_factory,
                                                                source_registry, target_registry, tmp_path,
                                                                unique_repo):
    """The proof: skopeo pushes to a registry whose `notifications` call the app; the app imports."""
    # The upstream registry is created first (its port is the rule's registry), the app next.
    upstream = None
    app = None

    def start_upstream(url: str):
        return registry_factory(notifications={"url": url, "headers": {"X-Webhook-Secret": SECRET}})

    # Start the app with a rule that matches any 127.0.0.1 registry, then the registry pointing at it.
    app = app_host_factory(**events_env(tmp_path, "127.0.0.1:*"))
    upstream = start_upstream(f"{app.url}/api/webhooks/distribution")
    with Pusher(source_registry) as pusher:
        pushed = push_index(pusher, unique_repo, "1.0")
    skopeo_copy(f"{source_registry.host}/{unique_repo}:1.0", f"{upstream.host}/{unique_repo}:1.0")

    jobs = wait_jobs(app, 1)
    assert len(jobs) == 1, jobs  # blob and child-manifest events are ignored: one import per tagged push
    final = app.wait_for(jobs[0]["RowKey"])
    assert final["status"] == "Succeeded", final
    assert skopeo_digest(f"{target_registry.host}/mirror/{unique_repo}:1.0") == pushed.digest
    assert skopeo_digest(f"{upstream.host}/{unique_repo}:1.0") == pushed.digest


def test_eventgrid_validation_handshake_and_push(app_host_factory, source_registry, target_registry, tmp_path,
                                                 unique_repo):
    app = app_host_factory(**events_env(tmp_path, source_registry.host))
    validation = json.loads((FIXTURES / "eventgrid_validation.json").read_text())
    r = app.http.post(f"/api/events?token={SECRET}", json=validation,
                      headers={"aeg-event-type": "SubscriptionValidation"})
    assert r.status_code == 200
    assert r.json() == {"validationResponse": validation[0]["data"]["validationCode"]}

    r = app.http.options(f"/api/events?token={SECRET}", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert r.status_code == 200 and r.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"

    with Pusher(source_registry) as pusher:
        pushed = push_index(pusher, unique_repo, "2.0")
    event = json.loads((FIXTURES / "eventgrid_imagepushed.json").read_text())
    event[0]["data"]["target"].update(repository=unique_repo, tag="2.0", digest=pushed.digest,
                                      mediaType=pushed.media_type)
    event[0]["data"]["request"]["host"] = source_registry.host
    started = time.monotonic()
    r = app.http.post(f"/api/events?token={SECRET}", json=event, headers={"aeg-event-type": "Notification"})
    assert time.monotonic() - started < 1.0  # answered before any copy
    assert r.status_code == 200, r.text
    [job] = r.json()["jobs"]
    assert app.wait_for(job["id"])["status"] == "Succeeded"
    assert skopeo_digest(f"{target_registry.host}/mirror/{unique_repo}:2.0") == pushed.digest

    # The same delivery again (Event Grid retries): the first job's id comes back, nothing new queued.
    again = app.http.post(f"/api/events?token={SECRET}", json=event, headers={"aeg-event-type": "Notification"})
    assert again.json()["jobs"][0]["id"] == job["id"] and again.json()["jobs"][0]["duplicate"] is True
    assert len(jobs_in(app)) == 1


@pytest.mark.parametrize("path,headers,expected", [
    ("/api/events", {}, 401),  # no token
    ("/api/events?token=wrong-token-0123456789", {}, 401),
    ("/api/webhooks/distribution", {}, 401),
    ("/api/webhooks/distribution", {"X-Webhook-Secret": "wrong-secret-0123456789"}, 401),
    ("/api/webhooks/github", {"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401),
    ("/api/webhooks/harbor", {"Authorization": SECRET}, 401),  # no harbor secret configured: refused
    ("/api/webhooks/nosuchprovider", {"X-Webhook-Secret": SECRET}, 404),
], ids=["eg-missing", "eg-wrong", "dist-missing", "dist-wrong", "github-badsig", "harbor-unconfigured",
        "unknown-provider"])
def test_unauthenticated_deliveries_are_refused_and_nothing_is_queued(app_host_factory, source_registry, tmp_path,
                                                                      path, headers, expected):
    app = app_host_factory(**events_env(tmp_path, source_registry.host))
    payload = (FIXTURES / ("eventgrid_imagepushed.json" if "events" in path else "distribution_push_tagged.json"))
    r = app.http.post(path, content=payload.read_bytes(), headers={"Content-Type": "application/json", **headers})
    assert r.status_code == expected, r.text
    assert set(r.json()["error"]) >= {"code", "message"}
    assert app.peek() == [] and jobs_in(app) == []


@pytest.mark.parametrize("query", ["", "?token=wrong-token-0123456789", f"?token={SECRET[:-1]}"],
                         ids=["missing", "wrong", "truncated"])
def test_cloudevents_handshake_needs_the_secret_too(app_host_factory, source_registry, tmp_path, query):
    """The OPTIONS handshake subscribes the endpoint: without the secret it is refused like a delivery."""
    app = app_host_factory(**events_env(tmp_path, source_registry.host))
    r = app.http.options(f"/api/events{query}", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert r.status_code == 401, r.text
    assert "webhook-allowed-origin" not in r.headers
    assert r.json()["error"]["code"] == "Unauthorized" and SECRET not in r.text
    ok = app.http.options("/api/events", headers={"WebHook-Request-Origin": "eventgrid.azure.net",
                                                  "X-Webhook-Secret": SECRET})  # the header works as for deliveries
    assert ok.status_code == 200 and ok.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_cloudevents_handshake_is_refused_when_no_secret_is_configured(app_host_factory, source_registry, tmp_path):
    env = events_env(tmp_path, source_registry.host)
    del env["IMPORT_EVENTGRID_SECRET"]
    app = app_host_factory(**env)
    r = app.http.options(f"/api/events?token={SECRET}", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert r.status_code == 401 and "webhook-allowed-origin" not in r.headers
    assert "IMPORT_EVENTGRID_SECRET" in r.json()["error"]["message"]


def test_the_same_event_delivered_twice_at_once_is_one_job(app_host_factory, tmp_path):
    """Event Grid may deliver one event twice at the same moment: both deliveries get the same job."""
    app = app_host_factory(**events_env(tmp_path, "registry.example.com"),
                           **{"AzureWebJobs.run_import.Disabled": "true"})
    pairs = 16
    answers: list[list[dict]] = [[] for _ in range(pairs)]
    clients = [httpx.Client(base_url=app.url, timeout=30) for _ in range(2)]

    def deliver(pair: int, client: httpx.Client, barrier: threading.Barrier, event: list) -> None:
        barrier.wait(timeout=30)
        r = client.post(f"/api/events?token={SECRET}", json=event, headers={"aeg-event-type": "Notification"})
        assert r.status_code == 200, r.text
        answers[pair] += r.json()["jobs"]

    try:
        for pair in range(pairs):
            event = json.loads((FIXTURES / "eventgrid_imagepushed.json").read_text())
            event[0]["data"]["target"].update(repository="team/app", tag=f"1.{pair}",
                                              digest="sha256:" + f"{pair:x}" * 64)
            event[0]["data"]["request"]["host"] = "registry.example.com"
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=deliver, args=(pair, client, barrier, event)) for client in clients]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
    finally:
        for client in clients:
            client.close()
    for pair, jobs in enumerate(answers):
        assert len(jobs) == 2 and jobs[0]["id"] == jobs[1]["id"], f"pair {pair}: {jobs}"
        assert sorted(job["duplicate"] for job in jobs) == [False, True], f"pair {pair}: {jobs}"
    records = jobs_in(app)
    assert len(records) == pairs and {r["RowKey"] for r in records} == {jobs[0]["id"] for jobs in answers}
    assert len(app.peek()) == pairs  # one message per job
    lanes = [e for e in app.entities() if e["PartitionKey"].startswith("lane-")]
    assert sorted(e["jobId"] for e in lanes) == sorted(r["RowKey"] for r in records)  # one lane row per job


def test_malformed_and_unmatched_deliveries(app_host_factory, source_registry, tmp_path):
    app = app_host_factory(**events_env(tmp_path, "registry.nowhere.example"))
    bad = app.http.post("/api/webhooks/distribution", content=b"{not json",
                        headers={"X-Webhook-Secret": SECRET})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidRequest"
    # A well-formed push from a registry no rule covers: acknowledged (200), ignored, nothing queued.
    r = app.http.post("/api/webhooks/distribution",
                      content=(FIXTURES / "distribution_push_tagged.json").read_bytes(),
                      headers={"X-Webhook-Secret": SECRET})
    assert r.status_code == 200 and r.json() == {"jobs": [], "ignored": 1}
    assert app.peek() == [] and jobs_in(app) == []


def test_new_digest_for_a_busy_tag_waits_for_the_older_import(app_host_factory, source_registry, target_registry,
                                                              tmp_path, unique_repo):
    """Two digests for one target tag never run in parallel: the newer waits, then wins the tag."""
    app = app_host_factory(**events_env(tmp_path, source_registry.host),
                           **{"AzureWebJobs.run_import.Disabled": "true"}, IMPORT_RETRY_BASE_SECONDS="1")
    svc = app.service()
    with Pusher(source_registry) as pusher:
        old = push_index(pusher, unique_repo, "old")
        new = push_index(pusher, unique_repo, "new")
    ids = []
    for pushed in (old, new):
        event = json.loads((FIXTURES / "eventgrid_imagepushed.json").read_text())
        event[0]["id"] = pushed.digest
        event[0]["data"]["target"].update(repository=unique_repo, tag="live", digest=pushed.digest,
                                          mediaType=pushed.media_type)
        event[0]["data"]["request"]["host"] = source_registry.host
        r = app.http.post(f"/api/events?token={SECRET}", json=event)
        ids.append(r.json()["jobs"][0]["id"])
    message = lambda job_id: json.dumps({"v": 1, "jobId": job_id})  # noqa: E731
    assert svc.process_message(message(ids[1])) == "waiting"  # the older import of this tag has not run yet
    assert svc.process_message(message(ids[0])) == "succeeded"
    assert svc.process_message(message(ids[1])) == "not-due"  # a stray redelivery does not jump its wait
    # The timer, run at given moments instead of waiting for them: not before the wait is over, then
    # exactly once it is.
    due = dt.datetime.fromisoformat(app.status(ids[1])["nextAttemptAt"])
    timer = functools.partial(sweep, svc.settings, svc.store, svc.queue, svc.worker)
    assert timer(now=due - dt.timedelta(milliseconds=1))["requeued"] == 0
    assert timer(now=due)["requeued"] == 1
    assert svc.process_message(message(ids[1])) == "succeeded"
    assert skopeo_digest(f"{target_registry.host}/mirror/{unique_repo}:live") == new.digest
