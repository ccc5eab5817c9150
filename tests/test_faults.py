"""Fault injection: a proxy in front of a real Distribution registry breaks chosen requests;
every import still ends byte-identical (skopeo reads the digest back), or fails once, clearly, with
nothing tagged. Request counts prove the bounds: no retry storms, no replayed downloads.

The table runs the CLI in-process with stamina's waits off (the counts are what matters there); the
Retry-After tests further down run the real backoff and time it.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import Optional, Union

import httpx
import pytest
import stamina

from importcore.net.retry import ATTEMPTS
from tests.support.faultproxy import Cut, CutRequest, FaultProxy, NoRange, Reset, Stall, Status
from tests.support.images import Pusher, push_image
from tests.support.skopeo import skopeo_digest
from tests.test_cli_import import error_line, run_cli

LAYER = 1536 * 1024  # over blobcopy.SMALL_BLOB (streamed PATCH path), cut in the middle, still fast
CUT = 100_000


@pytest.fixture
def image(source_registry, unique_repo, monkeypatch):
    """One image (config + a 256 KiB layer) in the source; blobs go one at a time (largest first), so
    the n-th upload request of a test is a known blob."""
    monkeypatch.setenv("IMPORT_BLOB_CONCURRENCY", "1")
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", layers=[LAYER])
    pushed.layer, pushed.config = pushed.blobs[1][0], pushed.blobs[0][0]
    return pushed


@pytest.fixture
def fast_retries():
    """The retry layer as configured (ATTEMPTS tries), without its waits."""
    with stamina.set_testing(True, attempts=ATTEMPTS):
        yield


@pytest.fixture
def proxies(source_registry, target_registry):
    """A FaultProxy in front of each registry: (source proxy, target proxy)."""
    with FaultProxy(source_registry) as src, FaultProxy(target_registry) as dst:
        yield src, dst


def run(capsys, source_host: str, target_host: str, repo: str) -> tuple[int, Optional[dict], str]:
    rc, out, err = run_cli(capsys, "--source", f"{source_host}/{repo}:v1", "--name", target_host, "--output", "json")
    return rc, (json.loads(out) if rc == 0 else None), err


def assert_identical(target_registry, image) -> None:
    assert skopeo_digest(f"{target_registry.host}/{image.repo}:v1") == image.digest


def assert_nothing_tagged(target_registry, image) -> None:
    with Pusher(target_registry) as t:
        assert t.tags(image.repo) == []
        assert t.get_manifest(image.repo, image.digest).status_code == 404


def open_uploads(target_registry, repo: str) -> list[str]:
    """Upload sessions the target still keeps (Distribution's filesystem layout): those with data or a
    start time. After a DELETE, 2.8 closes the cancelled writer once more, which stores an empty hash
    state under the session's directory again; without `startedat` that is no session (GET -> 404
    BLOB_UPLOAD_UNKNOWN), and it holds no bytes."""
    root = target_registry.root / "docker/registry/v2/repositories" / repo / "_uploads"
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "startedat").exists() or (p / "data").exists())


def upload_code(target_registry, location: str) -> tuple[int, list[str]]:
    """GET <upload location> on the registry itself: (status, OCI error codes)."""
    r = httpx.get(target_registry.url + location)
    codes = [e.get("code") for e in r.json().get("errors", [])] if r.status_code >= 400 else []
    return r.status_code, codes


# ---- the table ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    side: str  # which registry the proxy stands in front of: "source" or "target"
    method: str
    path: str  # regex; {layer} and {config} are filled in
    fault: Union[Cut, CutRequest, NoRange, Reset, Stall, Status]
    nth: Union[int, tuple, None]
    hits: int  # requests the rule saw: bounded retries, not a storm
    error: Optional[str] = None  # None: the import succeeds; else a phrase of its one error line


BLOB = r"/blobs/{layer}$"
MANIFEST = r"/manifests/(v1|sha256:[0-9a-f]+)$"  # the tag, or the digest its HEAD named
UPLOADS = r"/blobs/uploads/(\?mount=|$)"  # a POST that opens a session (small blobs ask for a mount)
PATCH = r"/blobs/uploads/[^/?]+\?"
COMMIT = r"/blobs/uploads/.+digest=sha256%3A"

CONFIG = r"/blobs/{config}$"  # a small blob: read whole, its session opened by a mount request
MOUNT = r"/blobs/uploads/\?mount="
COMMIT_CONFIG = r"/blobs/uploads/.+digest=sha256%3A{config_hex}"

CASES = {
    # transient: retried, and the import ends byte-identical
    "source blob GET 503 once": Case("source", "GET", BLOB, Status(503), 1, hits=2),
    "source config GET 503 once": Case("source", "GET", CONFIG, Status(503), 1, hits=2),
    "target config commit 503 once": Case("target", "PUT", COMMIT_CONFIG, Status(503), 1, hits=2),
    # a registry that refuses mount requests gets a plain upload of the small blob
    "target refuses mount requests 405": Case("target", "POST", MOUNT, Status(405, "UNSUPPORTED"), None, hits=1),
    "target refuses mount requests 400": Case("target", "POST", MOUNT, Status(400, "UNSUPPORTED"), None, hits=1),
    "source blob GET 500 once": Case("source", "GET", BLOB, Status(500), 1, hits=2),
    "source blob GET 502 twice": Case("source", "GET", BLOB, Status(502), (1, 2), hits=3),
    "source blob GET 408 once": Case("source", "GET", BLOB, Status(408), 1, hits=2),
    "source blob GET reset before any answer": Case("source", "GET", BLOB, Reset(), 1, hits=2),
    "source blob GET cut mid-body (FIN)": Case("source", "GET", BLOB, Cut(CUT), 1, hits=2),
    "source blob GET cut mid-body (RST)": Case("source", "GET", BLOB, Cut(CUT, reset=True), 1, hits=2),
    "source blob GET stalled 0.3 s": Case("source", "GET", BLOB, Stall(0.3), 1, hits=1),
    "source manifest HEAD reset": Case("source", "HEAD", MANIFEST, Reset(), 1, hits=2),
    "source manifest GET 429 (no Retry-After)": Case("source", "GET", MANIFEST, Status(429), 1, hits=2),
    "source manifest GET cut mid-body": Case("source", "GET", MANIFEST, Cut(100), 1, hits=2),
    "target blob HEAD 503": Case("target", "HEAD", BLOB, Status(503), 1, hits=2),
    "target upload start 503": Case("target", "POST", UPLOADS, Status(503), 1, hits=3),
    "target upload PATCH 503": Case("target", "PATCH", PATCH, Status(503), 1, hits=2),  # the layer streams
    # the config is small: one monolithic PUT (blobcopy.SMALL_BLOB); whichever PUT comes first fails once
    "target upload PUT 502": Case("target", "PUT", COMMIT, Status(502), 1, hits=3),
    "target upload commit 503": Case("target", "PUT", COMMIT, Status(503), 1, hits=3),
    "target manifest PUT 429": Case("target", "PUT", MANIFEST, Status(429), 1, hits=2),
    "target manifest PUT reset": Case("target", "PUT", MANIFEST, Reset(), 1, hits=2),
    # storms: they stop at the bound (ATTEMPTS tries of the unit, never ATTEMPTS² nested)
    "source manifest GET 503 storm": Case("source", "GET", MANIFEST, Status(503), None, hits=ATTEMPTS,
                                          error="503 UNAVAILABLE"),
    "source blob GET 503 storm": Case("source", "GET", BLOB, Status(503), None, hits=ATTEMPTS,
                                      error="503 UNAVAILABLE"),
    "target upload start 503 storm": Case("target", "POST", UPLOADS, Status(503), None, hits=ATTEMPTS,
                                          error="503 UNAVAILABLE"),
    "source blob GET reset storm": Case("source", "GET", BLOB, Reset(), None, hits=ATTEMPTS,
                                        error="connection to"),
    # permanent: tried once, one clear line, nothing tagged
    "source manifest GET 404 MANIFEST_UNKNOWN": Case("source", "GET", MANIFEST, Status(404, "MANIFEST_UNKNOWN"), None,
                                                     hits=1, error="404 MANIFEST_UNKNOWN"),
    "source blob GET 404 BLOB_UNKNOWN": Case("source", "GET", BLOB, Status(404, "BLOB_UNKNOWN"), None, hits=1,
                                             error="404 BLOB_UNKNOWN"),
    "source config GET 404 BLOB_UNKNOWN": Case("source", "GET", CONFIG, Status(404, "BLOB_UNKNOWN"), None, hits=1,
                                               error="404 BLOB_UNKNOWN"),
    "source blob GET 401 DENIED": Case("source", "GET", BLOB, Status(401, "DENIED"), None, hits=1,
                                       error="401 DENIED"),
    "source blob GET 403 DENIED": Case("source", "GET", BLOB, Status(403, "DENIED"), None, hits=1,
                                       error="403 DENIED"),
    "source manifest GET 400": Case("source", "GET", MANIFEST, Status(400, "MANIFEST_INVALID"), None, hits=1,
                                    error="400 MANIFEST_INVALID"),
    "target upload commit 400 DIGEST_INVALID": Case("target", "PUT", COMMIT, Status(400, "DIGEST_INVALID"), None,
                                                    hits=1, error="400 DIGEST_INVALID"),
    "target manifest PUT 403 DENIED": Case("target", "PUT", MANIFEST, Status(403, "DENIED"), None, hits=1,
                                           error="403 DENIED"),
    "target manifest PUT 404 NAME_UNKNOWN": Case("target", "PUT", MANIFEST, Status(404, "NAME_UNKNOWN"), None,
                                                 hits=1, error="404 NAME_UNKNOWN"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fault(capsys, local_env, fast_retries, proxies, source_registry, target_registry, image, name):
    case = CASES[name]
    src, dst = proxies
    proxy = src if case.side == "source" else dst
    rule = proxy.add(case.method, case.path.format(layer=image.layer, config=image.config,
                                                   config_hex=image.config.partition(":")[2]), case.fault,
                     nth=case.nth)

    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rule.hits == case.hits, [f"{s.method} {s.path} -> {s.status}" for s in proxy.requests]
    if case.error is None:
        assert rc == 0, err
        assert_identical(target_registry, image)
        assert result["blobs"]["copied"] == 2
    else:
        assert rc == 1
        line = error_line(err)
        assert case.error in line, line
        assert_nothing_tagged(target_registry, image)
    assert open_uploads(target_registry, image.repo) == []  # every session it opened is gone


# ---- requests per blob ---------------------------------------------------------------------------------

def test_small_blobs_get_no_head_and_present_ones_are_not_sent(capsys, local_env, proxies, source_registry,
                                                                target_registry, unique_repo):
    """A small blob (<= SMALL_BLOB) gets no HEAD: its POST asks for a mount from the target repository
    itself, and a registry holding the blob there answers 201, so it is not sent. Its download started
    beside that POST (one round trip per blob instead of two) and is dropped. Here the target holds two
    of the four blobs already (an interrupted import: untagged)."""
    src, dst = proxies
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", layers=[3000, 4000, 5000])
        present = pushed.blobs[1:3]
        seeded = [p.get_blob(unique_repo, d).content for d, _ in present]
    with Pusher(target_registry) as t:
        for data in seeded:
            t.blob(unique_repo, data)

    rc, result, err = run(capsys, src.host, dst.host, unique_repo)

    assert rc == 0, err
    assert result["blobs"] == {"copied": 2, "skipped": 2, "mounted": 0}
    assert result["bytes"] == pushed.total_blob_bytes - sum(size for _, size in present)
    assert dst.count("HEAD", r"/blobs/sha256:") == 0
    assert sorted(m.status for m in dst.seen("POST", MOUNT)) == [201, 201, 202, 202]
    assert dst.count("POST", r"/blobs/uploads/$") == 0 and dst.count("PATCH") == 0
    assert dst.count("PUT", COMMIT) == 2
    fetched = [s.path.rsplit("/", 1)[1] for s in src.seen("GET", r"/blobs/sha256:")]
    assert sorted(fetched) == sorted(d for d, _ in pushed.blobs)  # each once, present or not
    assert_identical(target_registry, pushed)


# ---- resumption of a broken download ----------------------------------------------------------------

@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_cut_download_resumes_with_range_from_the_bytes_already_hashed(capsys, local_env, proxies, target_registry,
                                                                       image, reset):
    src, dst = proxies
    src.add("GET", f"/blobs/{image.layer}$", Cut(CUT, reset=reset), nth=1)

    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 0, err
    assert_identical(target_registry, image)
    first, second = src.seen("GET", f"/blobs/{image.layer}$")
    assert "range" not in first.headers and first.bytes_out == CUT
    assert second.status == 206 and second.headers["range"].startswith("bytes=")
    resumed_at = int(second.headers["range"].removeprefix("bytes=").rstrip("-"))
    # Exactly where the FIN came; an RST discards what the client had not read yet, so a little earlier.
    assert resumed_at == CUT if not reset else 0 < resumed_at <= CUT
    assert resumed_at + second.bytes_out == LAYER  # each byte after the resume point fetched once
    # the target never noticed: one session, one PATCH carrying the layer exactly once
    assert dst.count("POST", UPLOADS) == 2 and dst.count("DELETE") == 0
    assert dst.seen("PATCH")[0].bytes_in == LAYER


def test_without_range_support_the_stream_restarts_and_skips_what_was_sent(capsys, local_env, proxies,
                                                                         target_registry, image):
    src, dst = proxies
    src.add("GET", f"/blobs/{image.layer}$", Cut(CUT), nth=1)
    src.add("GET", f"/blobs/{image.layer}$", NoRange(), nth=2)

    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 0, err
    assert_identical(target_registry, image)
    first, second = src.seen("GET", f"/blobs/{image.layer}$")
    assert second.headers["range"] == f"bytes={CUT}-" and second.status == 200  # the proxy dropped the Range
    assert second.bytes_out == LAYER  # the whole blob again; its first CUT bytes were dropped, not re-sent
    assert dst.seen("PATCH")[0].bytes_in == LAYER


def test_read_timeout_mid_body_resumes_with_range(capsys, local_env, monkeypatch, proxies, target_registry, image):
    import importcore.engine.runner

    monkeypatch.setattr(importcore.engine.runner, "make_http_client",
                        partial(importcore.engine.runner.make_http_client, timeout=0.5))
    src, dst = proxies
    src.add("GET", f"/blobs/{image.layer}$", Stall(3.0, after=CUT), nth=1)

    started = time.monotonic()
    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 0, err
    assert time.monotonic() - started < 2.5  # the stall was cut short by the read timeout
    assert_identical(target_registry, image)
    first, second = src.seen("GET", f"/blobs/{image.layer}$")
    assert second.headers["range"] == f"bytes={CUT}-" and second.status == 206


def test_a_download_that_keeps_breaking_resumes_the_upload_where_the_registry_stands(
        capsys, local_env, fast_retries, proxies, target_registry, image):
    """Four cuts: the reconnects (3) run out, the attempt fails with the PATCH ended cleanly at 4 × 50 000
    bytes; the next attempt asks the session where it stands (GET <location> -> Range) and sends the rest."""
    src, dst = proxies
    src.add("GET", f"/blobs/{image.layer}$", Cut(50_000), nth=(1, 2, 3, 4))

    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 0, err
    assert_identical(target_registry, image)
    gets = src.seen("GET", f"/blobs/{image.layer}$")
    assert [g.headers.get("range") for g in gets] == [None, "bytes=50000-", "bytes=100000-", "bytes=150000-",
                                                      "bytes=200000-"]
    assert sum(g.bytes_out for g in gets) == LAYER
    status = dst.seen("GET", PATCH)
    assert len(status) == 1 and status[0].status == 204  # the resume point, from the registry
    patches = dst.seen("PATCH")
    assert [p.bytes_in for p in patches[:2]] == [200_000, LAYER - 200_000]  # nothing sent twice
    assert dst.count("POST", UPLOADS) == 2 and dst.count("DELETE") == 0  # one session per blob


def test_a_registry_refusing_to_continue_an_upload_gets_it_again_from_the_start(
        capsys, local_env, fast_retries, proxies, target_registry, image):
    """Some registries take one streamed PATCH per session only (go-containerregistry's refuses "stream
    uploads after first write"): the resumed PATCH's 400 means start over, not fail."""
    src, dst = proxies
    src.add("GET", f"/blobs/{image.layer}$", Cut(50_000), nth=(1, 2, 3, 4))
    dst.add("PATCH", PATCH, Status(400, "BLOB_UPLOAD_INVALID"), nth=2)

    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 0, err
    assert_identical(target_registry, image)
    first, refused, again = dst.seen("PATCH")[:3]
    assert (first.status, refused.status, again.status) == (202, 400, 202)
    assert again.bytes_in == LAYER and again.path != first.path  # a new session, from byte 0
    [cancel] = dst.seen("DELETE")
    assert cancel.path == first.path and cancel.status == 204
    assert open_uploads(target_registry, image.repo) == []


# ---- upload sessions: restarts are clean, nothing is left behind ------------------------------------

def test_upload_failing_mid_way_restarts_with_a_new_session_and_cancels_the_old(
        capsys, local_env, fast_retries, proxies, target_registry, image):
    src, dst = proxies
    dst.add("PATCH", PATCH, Status(503), nth=1)

    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 0, err
    assert_identical(target_registry, image)
    failed = dst.seen("PATCH")[0]
    [cancel] = dst.seen("DELETE")
    assert cancel.path == failed.path and cancel.status == 204
    assert upload_code(target_registry, failed.url_path) == (404, ["BLOB_UPLOAD_UNKNOWN"])  # gone, not just refused
    assert dst.count("POST", UPLOADS) == 3  # layer, layer again, config
    assert open_uploads(target_registry, image.repo) == []


def test_digest_mismatch_on_the_last_chunk_fails_once_and_leaves_no_session(capsys, local_env, fast_retries, proxies,
                                                                           source_registry, target_registry, image):
    """The known leak of a monolithic PUT: Distribution 2.8 refused to DELETE a session holding part of a
    body (404 BLOB_UPLOAD_INVALID) and kept it. The PATCH body now ends before the bad last chunk, the
    registry answers with a Location that matches what it stored, and that one is DELETEd."""
    path = source_registry.blob_data_path(image.layer)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last byte: only the final digest check can tell
    path.write_bytes(bytes(data))
    src, dst = proxies

    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 1
    line = error_line(err)
    assert image.layer in line and "digest mismatch" in line
    assert src.count("GET", f"/blobs/{image.layer}$") == 1  # permanent: not retried
    patch = dst.seen("PATCH")[0]
    assert 0 < patch.bytes_in < LAYER and patch.status == 202  # ended before the bad chunk, still complete
    [cancel] = dst.seen("DELETE")
    assert cancel.status == 204
    assert upload_code(target_registry, cancel.url_path) == (404, ["BLOB_UPLOAD_UNKNOWN"])
    assert open_uploads(target_registry, image.repo) == []
    assert_nothing_tagged(target_registry, image)


def test_request_body_cut_on_the_wire_restarts_cleanly(capsys, local_env, fast_retries, proxies, target_registry,
                                                       image):
    """The connection to the target drops half-way through the PATCH: a new session carries the blob.

    The old session holds bytes its Location's `_state` does not know of, so Distribution 2.8 answers
    the DELETE (and GET <location>) with 404 BLOB_UPLOAD_INVALID and keeps it until its upload purger
    runs; Distribution 3.0 answers the GET with a current Location (PR #3755), which uploads.cancel
    then DELETEs. Either way it can never be committed or tagged."""
    src, dst = proxies
    dst.add("PATCH", PATCH, CutRequest(CUT), nth=1)

    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 0, err
    assert_identical(target_registry, image)
    cut = dst.seen("PATCH")[0]
    [cancel] = dst.seen("DELETE")
    assert cancel.path == cut.path  # the old session was cancelled (as far as the registry lets us)
    assert dst.count("POST", UPLOADS) == 3
    assert upload_code(target_registry, cut.url_path)[0] == 404


# ---- Retry-After, with the real backoff ---------------------------------------------------------------

def test_429_on_manifest_put_waits_retry_after_seconds(capsys, local_env, proxies, target_registry, image):
    src, dst = proxies
    rule = dst.add("PUT", MANIFEST, Status(429, retry_after=1), nth=1)

    started = time.monotonic()
    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 0, err
    assert time.monotonic() - started >= 1.0
    assert rule.hits == 2
    assert_identical(target_registry, image)


def test_503_at_upload_start_waits_until_the_retry_after_http_date(capsys, local_env, proxies, target_registry,
                                                                   image):
    src, dst = proxies
    rule = dst.add("POST", UPLOADS, Status(503, retry_after_date=2), nth=1)

    started = time.monotonic()
    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 0, err
    assert time.monotonic() - started >= 1.0  # an IMF-fixdate has whole seconds: 2 s ahead is > 1 s
    assert rule.hits == 3  # the layer's start twice, the config's once
    assert_identical(target_registry, image)


def test_retry_after_beyond_the_cap_surfaces_at_once(capsys, local_env, proxies, target_registry, image):
    """Two minutes is the timer's job (the job is re-scheduled), not something to sleep through here."""
    src, dst = proxies
    rule = src.add("GET", MANIFEST, Status(503, retry_after=120))

    started = time.monotonic()
    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 1 and rule.hits == 1
    assert time.monotonic() - started < 5
    assert "503 UNAVAILABLE" in error_line(err)
    assert_nothing_tagged(target_registry, image)


@pytest.fixture
def scheduled_retries():
    """Every retry the retry layer schedules (stamina's RetryDetails: retry_num, wait_for, caused_by)."""
    from stamina.instrumentation import set_on_retry_hooks

    seen: list = []
    set_on_retry_hooks([seen.append])
    yield seen
    set_on_retry_hooks(None)  # stamina's defaults again


def test_a_503_storm_is_bounded_in_attempts_and_backoff(capsys, local_env, proxies, target_registry, image,
                                                         scheduled_retries):
    """The real backoff: ATTEMPTS tries, the waits between them exponential (0.2 s doubling, + up to
    0.5 s jitter), counted as the retry layer schedules them rather than timed on the wall clock."""
    src, dst = proxies
    rule = src.add("GET", f"/blobs/{image.layer}$", Status(503))

    rc, result, err = run(capsys, src.host, dst.host, image.repo)

    assert rc == 1 and rule.hits == ATTEMPTS
    assert [r.retry_num for r in scheduled_retries] == list(range(1, ATTEMPTS))  # one retry per further try
    for number, retry in enumerate(scheduled_retries):
        assert 0.2 * 2**number <= retry.wait_for <= 0.2 * 2**number + 0.5, retry
        assert "503 UNAVAILABLE" in str(retry.caused_by)
    assert re.search(r"503 UNAVAILABLE", error_line(err))
    assert_nothing_tagged(target_registry, image)
