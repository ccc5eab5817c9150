"""Service-level resilience beyond test_worker.py: a worker killed after K blobs, the host's
function timeout, and Docker Hub's realities (HEAD before GET, 429 with RateLimit-* headers), through
function_app on devhost against Azurite, real registries and the fault proxy."""
from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from importcore.service.store import iso, utcnow
from importcore.values.settings import Settings
from tests.support.faultproxy import FaultProxy, Stall, Status
from tests.support.images import Pusher, push_image
from tests.support.skopeo import skopeo_digest
from tests.test_worker import NO_WORKER, ZERO, body

LAYERS = [4096, 8192, 12288, 16384, 20480]  # + the config: 6 blobs, copied largest first


class _HostKilled(BaseException):
    """Stands in for the host killing the worker mid-copy: nothing in importcore catches it."""


def _submit(app, source_host: str, repo: str) -> tuple[str, str]:
    r = app.post_import(body(source_host, f"{repo}:v1", f"{repo}:v1"))
    assert r.status_code == 202, r.text
    [message] = app.peek()
    return r.json()["id"], base64.b64decode(message).decode()


def _in_target(target_registry, repo: str, digest: str) -> bool:
    with Pusher(target_registry) as t:
        return t.request("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 200


def test_worker_killed_after_k_blobs_resumes_from_what_the_target_has(app_host_factory, source_registry,
                                                                      target_registry, unique_repo):
    k = 2
    app = app_host_factory(IMPORT_BLOB_CONCURRENCY="1", **NO_WORKER)
    svc = app.service()
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", layers=LAYERS)
    job_id, message = _submit(app, source_registry.host, unique_repo)
    real = svc.worker._run_request

    def killed_after_k(request, settings, *, on_progress, **kw):
        def progress(p):
            on_progress(p)
            if p.blobs_done >= k:
                raise _HostKilled
        return real(request, settings, on_progress=progress, **kw)

    svc.worker._run_request = killed_after_k
    with pytest.raises(_HostKilled):
        svc.process_message(message)
    svc.worker._run_request = real
    dead = svc.store.get(job_id)
    assert (dead.status, dead.attempts) == ("Running", 1)  # as a killed host leaves it
    copied_before = [d for d, _ in pushed.blobs if _in_target(target_registry, unique_repo, d)]
    assert len(copied_before) == k
    dead.lease_until = iso(utcnow() - dt.timedelta(seconds=1))  # ...until its lease runs out
    svc.store.save(dead)

    assert svc.process_message(message, dequeue_count=2) == "succeeded"  # the host delivers the message again

    done = app.status(job_id)
    assert (done["status"], done["attempts"]) == ("Succeeded", 2)
    blobs = done["result"]["blobs"]
    assert blobs["skipped"] >= k and blobs["copied"] == len(pushed.blobs) - blobs["skipped"]
    assert done["result"]["bytes"] == pushed.total_blob_bytes - sum(s for d, s in pushed.blobs if d in copied_before)
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest
    assert svc.sweep() == ZERO


def test_function_timeout_stops_new_blobs_and_reschedules_at_once(app_host_factory, source_registry, target_registry,
                                                                   unique_repo):
    """IMPORT_FUNCTION_TIMEOUT_SECONDS=2 with a 1 s margin: no blob starts after 1 s. Each blob download
    stalls 0.4 s, so the deadline passes mid-copy: the blob in flight finishes, the rest wait for the
    next attempt, which is due at once (no backoff) and skips what the first one copied. Only one
    attempt is allowed: an attempt that copied something before the deadline is a continuation and
    leaves IMPORT_MAX_ATTEMPTS alone (a big import may need several invocations)."""
    app = app_host_factory(IMPORT_BLOB_CONCURRENCY="1", IMPORT_FUNCTION_TIMEOUT_SECONDS="2",
                           IMPORT_DEADLINE_MARGIN_SECONDS="1", IMPORT_RETRY_BASE_SECONDS="600",
                           IMPORT_MAX_ATTEMPTS="1", **NO_WORKER)
    svc = app.service()
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", layers=LAYERS)
    with FaultProxy(source_registry) as proxy:
        proxy.add("GET", r"/blobs/sha256:", Stall(0.4))
        job_id, message = _submit(app, proxy.host, unique_repo)

        assert svc.process_message(message) == "continued"

        waiting = app.status(job_id)
        assert (waiting["status"], waiting["attempts"]) == ("Queued", 1)
        assert waiting["error"]["code"] == "DeadlineReached" and waiting["error"]["retryable"] is True
        assert "IMPORT_FUNCTION_TIMEOUT_SECONDS" in waiting["error"]["message"]
        assert "nextAttemptAt" not in waiting  # due now: a new invocation was queued at once, no backoff
        started = proxy.count("GET", r"/blobs/sha256:")
        present = [d for d, _ in pushed.blobs if _in_target(target_registry, unique_repo, d)]
        assert 1 <= started < len(pushed.blobs)
        assert len(present) == started  # every blob started was finished, none half-done
        with Pusher(target_registry) as t:
            assert t.tags(unique_repo) == []  # nothing tagged yet

        proxy.clear()
        original, again = app.peek()  # NO_WORKER: the first delivery's message was read, never deleted
        assert svc.sweep() == ZERO  # the continuation is already queued: the timer adds nothing
        assert svc.process_message(base64.b64decode(again).decode()) == "succeeded"

    done = app.status(job_id)
    assert (done["status"], done["attempts"]) == ("Succeeded", 2)
    assert done["result"]["blobs"]["skipped"] == started
    assert done["result"]["blobs"]["copied"] == len(pushed.blobs) - started
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest


def test_running_out_of_time_before_any_blob_counts_as_a_failed_attempt(app_host_factory, source_registry,
                                                                         target_registry, unique_repo):
    """No progress (the deadline passed before the first blob started) is a failure like any other:
    otherwise a source that always stalls would be continued for ever."""
    app = app_host_factory(IMPORT_FUNCTION_TIMEOUT_SECONDS="2", IMPORT_DEADLINE_MARGIN_SECONDS="1",
                           IMPORT_MAX_ATTEMPTS="1", **NO_WORKER)
    svc = app.service()
    with Pusher(source_registry) as p:
        push_image(p, unique_repo, "v1", layers=LAYERS)
    with FaultProxy(source_registry) as proxy:
        proxy.add("GET", r"/manifests/", Stall(1.5))
        job_id, message = _submit(app, proxy.host, unique_repo)
        assert svc.process_message(message) == "failed"
        assert proxy.count("GET", r"/blobs/sha256:") == 0
    done = app.status(job_id)
    assert (done["status"], done["attempts"]) == ("Failed", 1)
    assert done["error"]["code"] == "DeadlineReached" and done["error"]["retryable"] is False
    assert done["error"]["message"].startswith("gave up after 1 attempts: stopped before the function timeout")


def test_function_timeout_setting_matches_host_json():
    from pathlib import Path

    host = json.loads((Path(__file__).resolve().parent.parent / "host.json").read_text())
    h, m, s = (int(x) for x in host["functionTimeout"].split(":"))
    assert Settings.from_env({}).function_timeout_seconds == h * 3600 + m * 60 + s


# ---- Docker Hub realities ------------------------------------------------------------------------------

def test_tag_resolution_heads_before_it_gets_and_a_reimport_spends_no_pull(app_host_factory, source_registry,
                                                                         target_registry, unique_repo):
    """Docker Hub counts manifest GETs against the pull quota, not HEADs."""
    app = app_host_factory()
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1")
    with FaultProxy(source_registry) as proxy:
        first = app.post_import(body(proxy.host, f"{unique_repo}:v1", f"{unique_repo}:v1")).json()["id"]
        assert app.wait_for(first)["status"] == "Succeeded"
        manifests = [s.method for s in proxy.seen(path=r"/manifests/")]
        assert manifests == ["HEAD", "GET"]  # resolved by HEAD; one GET for the bytes

        second = app.post_import(body(proxy.host, f"{unique_repo}:v1", f"{unique_repo}:v1")).json()["id"]
        done = app.wait_for(second)
        assert done["status"] == "Succeeded" and done["result"]["digest"] == pushed.digest
        assert [s.method for s in proxy.seen(path=r"/manifests/")][2:] == ["HEAD"]  # no GET: no pull spent
        assert proxy.count("GET", r"/blobs/") == len(pushed.blobs)  # all from the first import
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest


def test_429_rate_limit_is_reported_in_the_error_and_the_job_status(app_host_factory, source_registry, unique_repo):
    app = app_host_factory(**NO_WORKER)
    svc = app.service()
    with Pusher(source_registry) as p:
        push_image(p, unique_repo, "v1")
    with FaultProxy(source_registry) as proxy:
        limited = Status(429, "TOOMANYREQUESTS", retry_after=3600,
                         headers=(("RateLimit-Limit", "100;w=21600"), ("RateLimit-Remaining", "0;w=21600")))
        rule = proxy.add("GET", r"/manifests/", limited)
        job_id, message = _submit(app, proxy.host, unique_repo)
        assert svc.process_message(message) == "retry-scheduled"  # an hour is the timer's wait, not this invocation's
        assert rule.hits == 1

    job = app.status(job_id)
    error = job["error"]
    assert (job["status"], error["status"], error["retryable"]) == ("Queued", 429, True)
    assert error["rateLimit"] == "0 of 100 remaining (window 21600 s)"
    assert "429 TOOMANYREQUESTS" in error["message"]
    assert "[rate limit: 0 of 100 remaining (window 21600 s)]" in error["message"]
    assert error["retryAfter"] == 3600
    delay = dt.datetime.fromisoformat(job["nextAttemptAt"]) - dt.datetime.fromisoformat(job["updatedAt"])
    assert delay >= dt.timedelta(minutes=29)  # Retry-After, capped at the worker's 30 min backoff ceiling
