"""The function app end to end: function_app.app on devhost, Azurite, real registries, httpx.

POST /api/imports -> 202 + Location -> the queue function copies -> GET shows Succeeded, and skopeo
reads the same manifest digest from the target as from the source.
"""
from __future__ import annotations

import base64
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.images import Pusher, push_image, push_index
from tests.support.skopeo import skopeo_digest

NO_WORKER = {"AzureWebJobs.run_import.Disabled": "true"}  # messages stay in the queue for inspection


def import_body(registry, image: str, *tags: str, mode: str = "NoForce", **extra) -> dict:
    return {"source": {"registryUri": registry.host, "sourceImage": image}, "targetTags": list(tags),
            "mode": mode, **extra}


def test_import_succeeds_with_the_source_digest(app_host, source_registry, target_registry, unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1")
    target_ref = f"{unique_repo}/copy:v1"

    r = app_host.post_import(import_body(source_registry, f"{unique_repo}:v1", target_ref))

    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/api/imports/{job['id']}"
    assert job["status"] == "Queued" and job["attempts"] == 0 and job["targets"] == [target_ref]
    done = app_host.wait_for(job["id"])
    assert done["status"] == "Succeeded", done
    assert done["attempts"] == 1 and done["error"] is None
    assert skopeo_digest(f"{target_registry.host}/{target_ref}") == skopeo_digest(
        f"{source_registry.host}/{unique_repo}:v1") == pushed.digest
    result = done["result"]
    assert result["digest"] == pushed.digest and result["tags"] == [target_ref]
    assert result["manifests"] == 3  # the index and two images
    assert result["blobs"] == {"copied": len(pushed.blobs), "skipped": 0, "mounted": 0}
    assert result["bytes"] == pushed.total_blob_bytes
    progress = done["progress"]
    assert progress["blobsDone"] == progress["blobsTotal"] == len(pushed.blobs)
    assert progress["bytesDone"] == progress["bytesTotal"] == pushed.total_blob_bytes
    assert done["createdAt"] <= done["updatedAt"]


def test_parallel_imports_all_succeed(app_host, source_registry, target_registry, unique_repo):
    with Pusher(source_registry) as p:
        pushed = [push_image(p, f"{unique_repo}/img{i}", "1.0", layers=[1500 + i, 700]) for i in range(5)]

    def submit(i: int) -> str:
        r = app_host.post_import(import_body(source_registry, f"{unique_repo}/img{i}:1.0", f"{unique_repo}/out{i}:1.0"))
        assert r.status_code == 202, r.text
        return r.json()["id"]

    with ThreadPoolExecutor(5) as pool:
        ids = list(pool.map(submit, range(5)))
    assert len(set(ids)) == 5
    for i, job_id in enumerate(ids):
        done = app_host.wait_for(job_id)
        assert (done["status"], done["attempts"], done["result"]["digest"]) == ("Succeeded", 1, pushed[i].digest)
        assert skopeo_digest(f"{target_registry.host}/{unique_repo}/out{i}:1.0") == pushed[i].digest


def test_noforce_conflict_fails_once_and_force_overwrites(app_host, source_registry, target_registry, unique_repo):
    with Pusher(source_registry) as p:
        wanted = push_image(p, unique_repo, "stable")
    with Pusher(target_registry) as p:
        existing = push_image(p, unique_repo, "stable")

    request = import_body(source_registry, f"{unique_repo}:stable", f"{unique_repo}:stable")
    job_id = app_host.post_import(request).json()["id"]
    failed = app_host.wait_for(job_id)

    assert failed["status"] == "Failed" and failed["attempts"] == 1 and failed["result"] is None
    error = failed["error"]
    assert error["code"] == "TagConflict" and error["retryable"] is False
    assert f"{unique_repo}:stable" in error["message"] and "\n" not in error["message"]
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:stable") == existing.digest  # untouched
    app_host.host.run_timer("sweep_imports")  # a permanent failure is not retried
    assert app_host.service().sweep() == {"recovered": 0, "requeued": 0, "failed": 0, "uploadsCancelled": 0,
                                          "expired": 0}
    assert app_host.status(job_id)["attempts"] == 1 and app_host.peek() == []

    forced = app_host.post_import(import_body(source_registry, f"{unique_repo}:stable", f"{unique_repo}:stable",
                                              mode="Force")).json()["id"]
    assert app_host.wait_for(forced)["status"] == "Succeeded"
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:stable") == wanted.digest


@pytest.mark.parametrize("job_id", [pytest.param(str(uuid.uuid4()), id="unknown-uuid"), "not-a-uuid",
                                    pytest.param("%27%20or%20%271%27%3D%271", id="quote-injection")])
def test_unknown_id_is_404_json(app_host, job_id):
    r = app_host.http.get(f"/api/imports/{job_id}")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "NotFound"


SRC = "127.0.0.1:5999"  # allow-listed (bare 127.0.0.1); never contacted: every case fails validation
GOOD = {"source": {"registryUri": SRC, "sourceImage": "team/app:1.0"}, "targetTags": ["team/app:1.0"],
        "mode": "NoForce"}
DIGEST = "sha256:" + "a" * 64


def body_with(**changes) -> bytes:
    """GOOD with top-level keys replaced; source.<key> replaces one source field; None removes a key."""
    body = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        holder, name = (body["source"], key[7:]) if key.startswith("source_") else (body, key)
        if value is None:
            holder.pop(name, None)
        else:
            holder[name] = value
    return json.dumps(body).encode()


BAD_BODIES = [
    ("not-json", b"{not json", "body"),
    ("not-utf8", b"\xff\xfe{}", "body"),
    ("empty", b"", "body"),
    ("array", b"[1, 2]", "body"),
    ("string", b'"source"', "body"),
    ("missing-source", body_with(source=None), "source"),
    ("source-not-object", body_with(source="team/app:1.0"), "source"),
    ("missing-sourceImage", body_with(source_sourceImage=None), "source.sourceImage"),
    ("sourceImage-not-string", body_with(source_sourceImage=7), "source.sourceImage"),
    ("bad-reference", body_with(source_sourceImage="team/app:bad tag"), "source.sourceImage"),
    ("bad-digest", body_with(source_sourceImage="team/app@sha256:1234"), "source.sourceImage"),
    ("uppercase-repo", body_with(source_sourceImage="Team/App:1.0"), "source.sourceImage"),
    ("registry-twice", body_with(source_sourceImage="other.example.com/team/app:1.0"), "source.sourceImage"),
    ("bad-registryUri", body_with(source_registryUri="http://bad host/"), "source.registryUri"),
    ("registryUri-not-string", body_with(source_registryUri=["x"]), "source.registryUri"),
    ("resourceId", body_with(source_resourceId="/subscriptions/x/resourceGroups/y"), "source.resourceId"),
    ("targetTags-not-list", body_with(targetTags="team/app:1.0"), "targetTags"),
    ("targetTags-item-not-string", body_with(targetTags=[5]), "targetTags[0]"),
    ("bad-tag", body_with(targetTags=["team/app:1.0", "team/app:bad tag!"]), "targetTags"),
    ("uppercase-target", body_with(targetTags=["Team/App:1.0"]), "targetTags"),
    ("too-many-targets", body_with(targetTags=[f"team/app:t{i}" for i in range(51)]), "targetTags"),
    ("digest-source-untagged-target", body_with(source_sourceImage=f"team/app@{DIGEST}", targetTags=["x/y"]),
     "targetTags[0]"),
    ("untagged-repo-with-tag", body_with(untaggedTargetRepositories=["team/app:1.0"]), "untaggedTargetRepositories"),
    ("bad-mode", body_with(mode="Sometimes"), "mode"),
    ("mode-not-string", body_with(mode=True), "mode"),
    ("bad-platform", body_with(platform="linux"), "platform"),
    ("bad-platform-arch", body_with(platform="linux/AMD 64"), "platform"),
    ("platform-not-string", body_with(platform={"os": "linux"}), "platform"),
    ("platform-and-platforms", body_with(platform="linux/amd64", platforms=["linux/arm64"]), "platforms"),
    ("empty-platforms", body_with(platforms=[]), "platforms"),
    ("bad-platforms-item", body_with(platforms=["linux/amd64", "linux"]), "platforms[1]"),
    ("credentials-not-object", body_with(source_credentials="alice:pw"), "source.credentials"),
    ("username-without-password", body_with(source_credentials={"username": "alice"}), "source.credentials.password"),
    ("empty-password", body_with(source_credentials={"username": "alice", "password": ""}),
     "source.credentials.password"),
    ("username-not-string", body_with(source_credentials={"username": 1, "password": "x"}),
     "source.credentials.username"),
    ("too-large", body_with(padding="x" * (64 * 1024)), "body"),
    ("loopback-not-allowed", body_with(source_registryUri="127.0.0.2:5000"), "source.registryUri"),
    ("metadata-address", body_with(source_registryUri="169.254.169.254"), "source.registryUri"),
    ("unresolvable-registry", body_with(source_registryUri="registry.invalid"), "source.registryUri"),
    ("private-in-sourceImage", body_with(source_registryUri=None, source_sourceImage="10.1.2.3:5000/team/app:1"),
     "source.sourceImage"),
]


@pytest.mark.parametrize(("raw", "target"), [pytest.param(raw, target, id=name) for name, raw, target in BAD_BODIES])
def test_bad_body_is_400_naming_the_field_and_nothing_is_enqueued(app_host_factory, raw, target):
    app = app_host_factory(**NO_WORKER)

    r = app.post_import(raw, headers={"content-type": "application/json"})

    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["target"] == target, error
    assert error["code"] in ("InvalidRequest", "HostNotAllowed", "ConnectionFailed") and error["message"]
    assert "\n" not in error["message"] and "Traceback" not in r.text
    assert app.peek() == [] and app.entities() == []


def test_valid_body_enqueues_one_message_and_writes_one_row(app_host_factory):
    """The control for the test above: the same checks do see a message and a row."""
    app = app_host_factory(**NO_WORKER)
    r = app.post_import(body_with())
    assert r.status_code == 202, r.text
    [message] = app.peek()
    assert json.loads(base64.b64decode(message)) == {"v": 1, "jobId": r.json()["id"]}
    [row] = [e for e in app.entities() if e["PartitionKey"] == "import"]  # (the other row: its tag's lane)
    assert row["RowKey"] == r.json()["id"] and row["status"] == "Queued"


def test_function_key_is_required_when_configured(app_host_factory):
    app = app_host_factory(DEVHOST_FUNCTION_KEY="k3y-for-tests", **NO_WORKER)
    assert app.post_import(body_with()).status_code == 401
    assert app.post_import(body_with(), headers={"x-functions-key": "wrong"}).status_code == 401
    assert app.peek() == [] and app.entities() == []
    r = app.post_import(body_with(), headers={"x-functions-key": "k3y-for-tests"})
    assert r.status_code == 202
    assert app.http.get(r.headers["location"]).status_code == 401
    assert app.http.get(r.headers["location"], params={"code": "k3y-for-tests"}).status_code == 200
