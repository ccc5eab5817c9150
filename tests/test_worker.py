"""Queue worker and timer semantics: duplicate deliveries, transient and permanent failures,
poison messages, lease recovery and sweep idempotence (function_app on devhost, Azurite, registries)."""
from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import httpx
import pytest
import stamina

import function_app
from importcore.service.store import Job, iso, utcnow
from importcore.service.sweeper import sweep
from tests.support.images import Pusher, push_image
from tests.support.skopeo import skopeo_digest

NO_WORKER = {"AzureWebJobs.run_import.Disabled": "true"}  # messages stay in the queue; tests deliver them
NO_POISON_HANDLER = {"AzureWebJobs.poisoned_import.Disabled": "true"}  # poison messages stay where they land
ZERO = {"recovered": 0, "requeued": 0, "failed": 0, "uploadsCancelled": 0, "expired": 0}


def body(registry_host: str, image: str, *tags: str, **extra) -> dict:
    return {"source": {"registryUri": registry_host, "sourceImage": image}, "targetTags": list(tags),
            "mode": "NoForce", **extra}


def count_executions(app, *, before=None) -> list:
    """Wrap the service's copy engine: returns the list of requests it was asked to run."""
    worker = app.service().worker
    calls, real = [], worker._run_request

    def counted(request, settings, **kw):
        calls.append(request)
        if before:
            before()
        return real(request, settings, **kw)

    worker._run_request = counted
    return calls


def decoded(messages: list[str]) -> list[dict]:
    return [json.loads(base64.b64decode(m)) for m in messages]


def wait_until(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} not met in {timeout}s"
        time.sleep(0.05)
    return value


@pytest.fixture
def no_inprocess_retries():
    """The registry client's short in-process retries off, so a transient fault surfaces at once."""
    with stamina.set_testing(True, attempts=1):
        yield


@pytest.fixture
def queued_job(app_host_factory, source_registry, unique_repo):
    """A host without the queue worker, one image in the source and one submitted job: (app, job, message)."""
    app = app_host_factory(**NO_WORKER)
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "1")
    r = app.post_import(body(source_registry.host, f"{unique_repo}:1", f"{unique_repo}:1"))
    assert r.status_code == 202, r.text
    [message] = app.peek()
    return app, r.json(), base64.b64decode(message).decode(), pushed


def test_same_message_twice_copies_once(queued_job):
    app, job, message, pushed = queued_job
    calls = count_executions(app)
    assert app.service().process_message(message) == "succeeded"
    assert app.service().process_message(message, dequeue_count=2) == "done-already"
    assert len(calls) == 1
    done = app.status(job["id"])
    assert (done["status"], done["attempts"], done["result"]["digest"]) == ("Succeeded", 1, pushed.digest)
    assert done["result"]["blobs"]["copied"] == len(pushed.blobs)


def test_same_message_concurrently_is_claimed_once(queued_job):
    """Both deliveries read the Queued record before either claims it: the etag lets one win."""
    app, job, message, pushed = queued_job
    svc = app.service()
    calls = count_executions(app)
    both_read = threading.Barrier(2, timeout=10)
    real_get = svc.store.get
    reads = []

    def get_then_wait(job_id):
        found = real_get(job_id)
        reads.append(found.status)
        if len(reads) <= 2:
            both_read.wait()
        return found

    svc.store.get = get_then_wait
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(svc.process_message(message))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert reads[:2] == ["Queued", "Queued"]
    assert sorted(outcomes) == ["claimed-elsewhere", "succeeded"]
    assert len(calls) == 1
    done = app.status(job["id"])
    assert (done["status"], done["attempts"], done["result"]["digest"]) == ("Succeeded", 1, pushed.digest)


def test_duplicate_message_in_the_queue_copies_once(app_host_factory, source_registry, target_registry, unique_repo,
                                                    caplog):
    caplog.set_level("INFO", logger="root")
    app = app_host_factory()
    calls = count_executions(app, before=lambda: time.sleep(0.5))  # both deliveries overlap the copy
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "1")
    job_id = app.post_import(body(source_registry.host, f"{unique_repo}:1", f"{unique_repo}:1")).json()["id"]
    app.service().queue.send(job_id)  # the host's at-least-once delivery, made certain

    done = app.wait_for(job_id)
    wait_until(lambda: app.peek() == [] and caplog.text.count("import message") == 2, what="both messages handled")
    assert len(calls) == 1
    assert (done["status"], done["attempts"]) == ("Succeeded", 1)
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:1") == pushed.digest
    outcomes = [r.getMessage().rsplit(": ", 1)[1] for r in caplog.records
                if r.getMessage().startswith("import message")]
    assert sorted(outcomes)[1] == "succeeded"
    assert sorted(outcomes)[0] in ("claimed-elsewhere", "done-already", "running-elsewhere")


def test_transient_failure_is_retried_by_the_timer(app_host_factory, registry_factory, target_registry, unique_repo,
                                                   no_inprocess_retries):
    source = registry_factory()
    with Pusher(source) as p:
        pushed = push_image(p, unique_repo, "1")
    port = source.port
    source.stop()
    app = app_host_factory(IMPORT_RETRY_BASE_SECONDS="1")
    job_id = app.post_import(body(source.host, f"{unique_repo}:1", f"{unique_repo}:1")).json()["id"]

    waiting = app.wait_for(job_id, lambda j: j["error"] is not None)
    assert (waiting["status"], waiting["attempts"]) == ("Queued", 1)
    assert waiting["error"]["retryable"] is True and waiting["error"]["code"] == "ConnectionFailed"
    next_at = dt.datetime.fromisoformat(waiting["nextAttemptAt"])
    backoff = next_at - dt.datetime.fromisoformat(waiting["updatedAt"])
    assert dt.timedelta(seconds=0.5) < backoff < dt.timedelta(seconds=2)  # IMPORT_RETRY_BASE_SECONDS=1, jittered

    with mock.patch("tests.support.registries.free_port", return_value=port):
        source.start()  # same port, same storage: the registry is back
    # The timer at given moments instead of waiting for them: not due a moment before, due at next_at.
    svc = app.service()
    timer = functools.partial(sweep, svc.settings, svc.store, svc.queue, svc.worker)
    assert timer(now=next_at - dt.timedelta(milliseconds=1)) == ZERO
    assert timer(now=next_at) == dict(ZERO, requeued=1)  # the message the host's queue trigger now takes

    done = app.wait_for(job_id)
    assert (done["status"], done["attempts"], done["error"]) == ("Succeeded", 2, None)
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:1") == pushed.digest


class _Unavailable(BaseHTTPRequestHandler):
    """A registry that is always busy: 503 with Retry-After, and an OCI error body."""

    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).requests.append(f"{self.command} {self.path}")
        body = b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}'
        self.send_response(503)
        self.send_header("Retry-After", "120")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def busy_registry():
    _Unavailable.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_retry_after_is_honoured(app_host_factory, busy_registry, unique_repo):
    app = app_host_factory(IMPORT_RETRY_BASE_SECONDS="1")
    job_id = app.post_import(body(busy_registry, f"{unique_repo}:1", f"{unique_repo}:1")).json()["id"]

    waiting = app.wait_for(job_id, lambda j: j["error"] is not None)

    assert (waiting["status"], waiting["attempts"]) == ("Queued", 1)
    error = waiting["error"]
    assert error["retryable"] is True and error["status"] == 503 and error["retryAfter"] == 120
    delay = dt.datetime.fromisoformat(waiting["nextAttemptAt"]) - dt.datetime.fromisoformat(waiting["updatedAt"])
    assert dt.timedelta(seconds=119) < delay < dt.timedelta(seconds=121)  # Retry-After, not the 1 s backoff
    assert len(_Unavailable.requests) == 1  # 120 s is too long to wait in-process: surfaced at once
    assert app.service().sweep() == ZERO  # not due: the timer leaves it alone
    # A stray duplicate of the message arriving early does not cut the wait short.
    stray = json.dumps({"v": 1, "jobId": job_id})
    assert app.service().process_message(stray) == "not-due"
    assert len(_Unavailable.requests) == 1


def test_permanent_failure_is_not_retried(app_host_factory, source_registry, unique_repo):
    app = app_host_factory(IMPORT_RETRY_BASE_SECONDS="1")
    calls = count_executions(app)
    job_id = app.post_import(body(source_registry.host, f"{unique_repo}:missing", f"{unique_repo}:1")).json()["id"]

    failed = app.wait_for(job_id)

    assert (failed["status"], failed["attempts"]) == ("Failed", 1)
    assert failed["error"]["code"] == "NotFound" and failed["error"]["retryable"] is False
    assert unique_repo in failed["error"]["message"]
    app.host.run_timer("sweep_imports")  # the timer as the host fires it, now
    # ... and at moments past any backoff: the longest is MAX_BACKOFF (30 min), a day is well beyond.
    svc = app.service()
    for later in (dt.timedelta(seconds=2), dt.timedelta(hours=1), dt.timedelta(days=1)):
        assert sweep(svc.settings, svc.store, svc.queue, svc.worker, now=utcnow() + later) == ZERO
    assert app.peek() == [] and len(calls) == 1  # nothing was sent, so nothing can run again
    assert app.status(job_id)["attempts"] == 1
    # Past its time to live the finished record expires.
    later = utcnow() + dt.timedelta(days=svc.settings.job_ttl_days, hours=1)
    assert sweep(svc.settings, svc.store, svc.queue, svc.worker, now=later)["expired"] == 1
    assert app.http.get(f"/api/imports/{job_id}").status_code == 404


def test_message_that_keeps_failing_ends_in_the_poison_queue(app_host_factory, source_registry, unique_repo):
    app = app_host_factory(**NO_POISON_HANDLER)
    attempts = []

    def broken(request, settings, **kw):
        attempts.append(request)
        raise RuntimeError("engine bug")

    app.service().worker._run_request = broken
    with Pusher(source_registry) as p:
        push_image(p, unique_repo, "1")
    job_id = app.post_import(body(source_registry.host, f"{unique_repo}:1", f"{unique_repo}:1")).json()["id"]

    poisoned = wait_until(lambda: app.peek(f"{app.queue_name}-poison"), what="message in the poison queue")

    assert decoded(poisoned) == [{"v": 1, "jobId": job_id}]
    assert app.peek() == []
    assert len(attempts) == function_app.MAX_DEQUEUE
    job = app.wait_for(job_id)
    assert (job["status"], job["attempts"]) == ("Failed", function_app.MAX_DEQUEUE)
    assert job["error"]["code"] == "InternalError" and job["error"]["retryable"] is False
    assert "RuntimeError" in job["error"]["message"]


def test_corrupted_job_is_poisoned_and_recorded_failed(app_host_factory, caplog):
    caplog.set_level("INFO", logger="root")
    app = app_host_factory()
    svc = app.service()
    job = svc.store.create(Job(id=str(uuid.uuid4()), request={"corrupt": True}))  # unreadable request
    svc.queue.send(job.id)

    failed = app.wait_for(job.id)

    assert (failed["status"], failed["attempts"]) == ("Failed", function_app.MAX_DEQUEUE)
    assert failed["error"]["code"] == "InternalError" and failed["error"]["retryable"] is False
    wait_until(lambda: "Executed 'Functions.poisoned_import' (Succeeded" in caplog.text, what="poison handler ran")
    assert f"Moving message to queue '{app.queue_name}-poison'" in caplog.text
    assert app.peek() == [] and app.peek(f"{app.queue_name}-poison") == []


def test_poison_handler_marks_an_unfinished_job_failed(app_host_factory, source_registry, unique_repo):
    """A message the host gave up on while the record still says Queued (e.g. storage failed each time)."""
    app = app_host_factory(**NO_WORKER)
    job_id = app.post_import(body(source_registry.host, f"{unique_repo}:1", f"{unique_repo}:1")).json()["id"]
    [message] = app.peek()
    app.queue_client(f"{app.queue_name}-poison").send_message(message)  # as the host moves it: same text

    failed = app.wait_for(job_id)

    assert failed["status"] == "Failed" and failed["error"]["retryable"] is False
    assert failed["error"]["code"] and failed["error"]["message"]  # a user can tell what happened
    assert wait_until(lambda: app.peek(f"{app.queue_name}-poison") == [], what="poison message consumed")


def test_expired_lease_is_recovered_and_sweep_is_idempotent(queued_job, target_registry, unique_repo):
    app, job, message, pushed = queued_job
    svc = app.service()
    # A worker that died mid-copy: Running, lease expired, one upload session left open in the target.
    upload = httpx.post(f"{target_registry.url}/v2/{unique_repo}/blobs/uploads/")
    assert upload.status_code == 202
    location = str(httpx.URL(target_registry.url).join(upload.headers["location"]))
    record = svc.store.get(job["id"])
    record.status, record.attempts = "Running", 1
    record.lease_until, record.next_attempt_at = iso(utcnow() + dt.timedelta(minutes=5)), None
    record.uploads = svc.worker._seal([{"repository": unique_repo, "location": location}])
    svc.store.save(record)
    assert svc.process_message(message) == "running-elsewhere"  # while the lease holds, nobody else starts it
    assert svc.sweep() == ZERO
    record.lease_until = iso(utcnow() - dt.timedelta(seconds=5))
    svc.store.save(record)

    first = svc.sweep()
    second = svc.sweep()

    assert first == dict(ZERO, recovered=1, requeued=1, uploadsCancelled=1)
    assert second == ZERO
    assert httpx.get(location).status_code == 404  # the abandoned upload session was DELETEd
    recovered = app.status(job["id"])
    assert (recovered["status"], recovered["attempts"]) == ("Queued", 1)
    assert recovered["error"]["code"] == "WorkerLost" and recovered["error"]["retryable"] is True
    messages = decoded(app.peek())
    assert messages == [{"v": 1, "jobId": job["id"]}] * 2  # the original and the timer's
    assert svc.process_message(json.dumps(messages[0])) == "succeeded"
    assert svc.process_message(json.dumps(messages[1])) == "done-already"
    done = app.status(job["id"])
    assert (done["status"], done["attempts"], done["result"]["digest"]) == ("Succeeded", 2, pushed.digest)


def test_expired_lease_on_redelivery_cancels_the_dead_attempts_uploads(queued_job, target_registry, unique_repo):
    """The message comes back before the timer does: the new attempt takes over and cleans up."""
    app, job, message, pushed = queued_job
    svc = app.service()
    upload = httpx.post(f"{target_registry.url}/v2/{unique_repo}/blobs/uploads/")
    location = str(httpx.URL(target_registry.url).join(upload.headers["location"]))
    record = svc.store.get(job["id"])
    record.status, record.attempts, record.next_attempt_at = "Running", 1, None
    record.lease_until = iso(utcnow() - dt.timedelta(seconds=5))
    record.uploads = svc.worker._seal([{"repository": unique_repo, "location": location}])
    svc.store.save(record)

    assert svc.process_message(message) == "succeeded"

    done = app.status(job["id"])
    assert (done["status"], done["attempts"]) == ("Succeeded", 2)
    assert httpx.get(location).status_code == 404  # not left open for ever
    assert svc.store.get(job["id"]).uploads is None
    assert svc.sweep() == ZERO


def test_status_shows_live_progress_while_running(app_host_factory, source_registry, unique_repo, monkeypatch):
    monkeypatch.setattr("importcore.service.worker.PROGRESS_EVERY", 0.0)  # every change is written
    app = app_host_factory(IMPORT_BLOB_CONCURRENCY="1")  # one blob at a time: pausing one pauses the copy
    worker = app.service().worker
    real, paused, resume = worker._run_request, threading.Event(), threading.Event()

    def pausing(request, settings, *, on_progress, on_session, **kw):
        def progress(p):
            on_progress(p)  # the worker writes it to the record first
            if p.blobs_done == 1 and not paused.is_set():
                paused.set()
                resume.wait(20)
        return real(request, settings, on_progress=progress, on_session=on_session, **kw)

    worker._run_request = pausing
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "1", layers=[4096, 8192, 16384])
    job_id = app.post_import(body(source_registry.host, f"{unique_repo}:1", f"{unique_repo}:1")).json()["id"]
    try:
        wait_until(paused.is_set, what="copy under way")
        running = app.status(job_id)
    finally:
        resume.set()

    assert (running["status"], running["attempts"], running["result"], running["error"]) == ("Running", 1, None, None)
    progress = running["progress"]
    assert progress["blobsTotal"] == len(pushed.blobs) and progress["bytesTotal"] == pushed.total_blob_bytes
    assert 1 <= progress["blobsDone"] < progress["blobsTotal"]
    assert 0 < progress["bytesDone"] < progress["bytesTotal"]
    done = app.wait_for(job_id)
    assert done["status"] == "Succeeded" and done["progress"]["blobsDone"] == len(pushed.blobs)


def test_transient_failures_are_bounded_by_max_attempts(app_host_factory, busy_registry, unique_repo):
    app = app_host_factory(IMPORT_MAX_ATTEMPTS="2")
    svc = app.service()
    job_id = app.post_import(body(busy_registry, f"{unique_repo}:1", f"{unique_repo}:1")).json()["id"]
    first = app.wait_for(job_id, lambda j: j["error"] is not None)
    assert (first["status"], first["attempts"]) == ("Queued", 1)

    after_retry_after = utcnow() + dt.timedelta(seconds=130)
    assert sweep(svc.settings, svc.store, svc.queue, svc.worker, now=after_retry_after) == dict(ZERO, requeued=1)
    failed = app.wait_for(job_id)

    assert (failed["status"], failed["attempts"]) == ("Failed", 2)
    assert failed["error"]["retryable"] is False and failed["error"]["status"] == 503
    assert failed["error"]["message"].startswith("gave up after 2 attempts: ")
    assert sweep(svc.settings, svc.store, svc.queue, svc.worker, now=utcnow() + dt.timedelta(days=1)) == ZERO


def test_lost_worker_on_the_last_attempt_is_failed_by_the_timer(queued_job):
    app, job, message, pushed = queued_job
    svc = app.service()
    record = svc.store.get(job["id"])
    record.status, record.attempts = "Running", svc.settings.max_attempts
    record.lease_until, record.next_attempt_at = iso(utcnow() - dt.timedelta(seconds=1)), None
    svc.store.save(record)

    assert svc.sweep() == dict(ZERO, recovered=1, failed=1)
    assert svc.sweep() == ZERO

    failed = app.status(job["id"])
    assert (failed["status"], failed["attempts"]) == ("Failed", svc.settings.max_attempts)
    assert failed["error"]["code"] == "WorkerLost" and failed["error"]["retryable"] is False
    assert failed["error"]["message"].startswith(f"gave up after {svc.settings.max_attempts} attempts")
    assert svc.process_message(message) == "done-already"
    assert decoded(app.peek()) == [{"v": 1, "jobId": job["id"]}]  # only the original: nothing re-enqueued


def test_the_target_tags_lane_is_left_when_the_job_finishes(queued_job):
    """Per-tag ordering uses one small partition per target tag: a finished job leaves it, and a row
    whose job is gone does not hold the next import of that tag back."""
    app, job, message, pushed = queued_job
    svc = app.service()

    def lanes() -> list[dict]:
        return [e for e in app.entities() if e["PartitionKey"].startswith("lane-")]

    assert [e["jobId"] for e in lanes()] == [job["id"]]
    assert svc.process_message(message) == "succeeded"
    assert lanes() == []

    # A row left behind by a job record that no longer exists (expired, or deleted by hand).
    key = svc.store.get(job["id"]).target_key
    svc.store._table.create_entity({"PartitionKey": f"lane-{key}", "RowKey": "2000-01-01T00:00:00.000000Z|gone",
                                    "jobId": "gone"})
    host, _, image = job["source"].partition("/")
    again = app.post_import(body(host, image, job["targets"][0])).json()
    assert svc.process_message(json.dumps({"v": 1, "jobId": again["id"]})) == "succeeded"
    assert lanes() == []  # the ghost row was cleaned up on the way
