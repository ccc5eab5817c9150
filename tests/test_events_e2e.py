"""Events into imports, end to end: a real Distribution registry's own notifications, Event Grid and
webhook deliveries through the real function_app on the local host, against Azurite."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

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

    r = app.http.options("/api/events", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
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
    time.sleep(5.2)  # the newer one's wait passes; the timer re-enqueues it
    assert svc.sweep()["requeued"] == 1
    assert svc.process_message(message(ids[1])) == "succeeded"
    assert skopeo_digest(f"{target_registry.host}/mirror/{unique_repo}:live") == new.digest
