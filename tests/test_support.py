"""Proof that the test infrastructure itself works (registries, token auth, pushers, skopeo)."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.conftest import ALICE, BOB
from tests.support import images
from tests.support.images import Pusher, push_artifact_empty_config, push_helm_chart, push_image, push_index
from tests.support.skopeo import SkopeoError, skopeo_copy, skopeo_digest, skopeo_raw


def _kinds():
    return {
        "oci-image": lambda p, r: push_image(p, r, "v1"),
        "docker-image": lambda p, r: push_image(p, r, "v1", media="docker"),
        "docker-foreign": lambda p, r: push_image(p, r, "v1", media="docker", foreign_layers=2),
        "oci-nondistributable": lambda p, r: push_image(p, r, "v1", foreign_layers=1),
        "oci-index": lambda p, r: push_index(p, r, "v1"),
        "docker-list": lambda p, r: push_index(p, r, "v1", media="docker"),
        "nested-index": lambda p, r: push_index(p, r, "v1", nested=True),
        "helm": lambda p, r: push_helm_chart(p, r, "v1"),
        "artifact": lambda p, r: push_artifact_empty_config(p, r, "v1"),
    }


@pytest.mark.parametrize("kind", list(_kinds()))
def test_anonymous_push_reads_back_byte_identical(source_registry, unique_repo, kind):
    with Pusher(source_registry) as p:
        pushed = _kinds()[kind](p, unique_repo)
        ref = f"{source_registry.host}/{unique_repo}:v1"
        assert skopeo_raw(ref) == pushed.raw
        assert skopeo_digest(ref) == pushed.digest == "sha256:" + hashlib.sha256(pushed.raw).hexdigest()
        assert pushed.raw != json.dumps(json.loads(pushed.raw)).encode()  # odd whitespace on purpose
        for digest, size in pushed.blobs:
            assert len(p.get_blob(unique_repo, digest).content) == size
        for f in pushed.foreign:  # foreign layers are referenced, never stored
            assert p.request("HEAD", f"/v2/{unique_repo}/blobs/{f['digest']}").status_code == 404


def test_push_shapes(source_registry, unique_repo):
    with Pusher(source_registry) as p:
        idx = push_index(p, unique_repo, "multi", nested=True, layers_per_image=3, layer_size=100)
        (inner,) = idx.children
        assert inner.media_type == images.OCI_INDEX and [c.platform[1] for c in inner.children] == ["amd64", "arm64"]
        assert len(idx.blobs) == 2 * (1 + 3) and idx.total_blob_bytes > 600
        art = push_artifact_empty_config(p, unique_repo, "sbom", subject=idx.descriptor())
        body = json.loads(art.raw)
        assert body["config"] == images.EMPTY_DESCRIPTOR and body["subject"]["digest"] == idx.digest
        assert sorted(p.tags(unique_repo)) == ["multi", "sbom"]  # 2.8 does not sort tags


def test_htpasswd_registry_refuses_anonymous_accepts_alice(htpasswd_registry, unique_repo):
    assert httpx.get(f"{htpasswd_registry.url}/v2/").status_code == 401
    with Pusher(htpasswd_registry) as anon, pytest.raises(httpx.HTTPStatusError) as e:
        push_image(anon, unique_repo, "v1")
    assert e.value.response.status_code == 401
    with Pusher(htpasswd_registry, *ALICE) as alice:
        pushed = push_image(alice, unique_repo, "v1")
    ref = f"{htpasswd_registry.host}/{unique_repo}:v1"
    assert skopeo_digest(ref, creds=ALICE) == pushed.digest
    with pytest.raises(SkopeoError):
        skopeo_digest(ref)


def test_token_registry_push_pull_and_acl(token_registry, token_server, unique_repo):
    with Pusher(token_registry, *BOB) as bob:
        pushed = push_image(bob, unique_repo, "v1")
    ref = f"{token_registry.host}/{unique_repo}:v1"
    assert skopeo_digest(ref, creds=BOB) == pushed.digest
    assert skopeo_digest(ref) == pushed.digest  # default ACL: anonymous pull
    reqs = token_server.requests_for(unique_repo)
    assert {r["user"] for r in reqs} == {"bob", None} and all(r["status"] == 200 for r in reqs)

    token_server.grant("bob", unique_repo, ["pull"])
    with Pusher(token_registry, *BOB) as bob, pytest.raises(httpx.HTTPStatusError) as e:
        push_image(bob, unique_repo, "v2")
    assert e.value.response.status_code in (401, 403)
    assert e.value.response.request.url.host == "127.0.0.1" and "/v2/" in e.value.response.request.url.path

    token_server.grant(None, unique_repo, [])
    with pytest.raises(SkopeoError):
        skopeo_raw(ref)
    with Pusher(token_registry, "bob", "wrong") as bad, pytest.raises(httpx.HTTPStatusError) as e:
        bad.tags(unique_repo)
    assert e.value.response.status_code == 401 and e.value.response.url.path == "/token"


def test_token_server_oauth2_and_expiry(token_registry, token_server, unique_repo):
    scope = f"repository:{unique_repo}:pull,push"
    form = {"grant_type": "password", "username": BOB[0], "password": BOB[1], "service": token_server.service,
            "scope": scope, "client_id": "tests"}
    first = httpx.post(token_server.realm, data=form).json()
    assert first["refresh_token"] and first["expires_in"] == 300
    again = httpx.post(token_server.realm, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                                 "service": token_server.service, "scope": scope}).json()
    auth = {"Authorization": f"Bearer {again['access_token']}"}
    assert httpx.post(f"{token_registry.url}/v2/{unique_repo}/blobs/uploads/", headers=auth).status_code == 202
    bad = httpx.post(token_server.realm, data=dict(form, password="nope"))
    assert bad.status_code == 401
    off = httpx.get(token_server.realm, params={"service": token_server.service, "scope": scope,
                                                "offline_token": "true"}, auth=BOB).json()
    assert off["refresh_token"]
    expired = token_server.issue("bob", [scope], expires_in=-120)  # beyond Distribution's 60 s leeway
    r = httpx.get(f"{token_registry.url}/v2/{unique_repo}/tags/list", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401


def test_corrupting_a_blob_changes_what_is_served(registry_factory, unique_repo):
    reg = registry_factory()
    with Pusher(reg) as p:
        pushed = push_image(p, unique_repo, "v1", layers=[4096])
        layer_digest, size = pushed.blobs[-1]
        path = reg.blob_data_path(layer_digest)
        assert path.stat().st_size == size
        path.write_bytes(os.urandom(size))
        served = p.get_blob(unique_repo, layer_digest).content
    assert len(served) == size and "sha256:" + hashlib.sha256(served).hexdigest() != layer_digest


def test_notifications_reach_a_webhook(registry_factory, unique_repo):
    got, lock = [], threading.Lock()

    class Sink(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                got.append((self.headers.get("Authorization"), json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        reg = registry_factory(notifications={"url": f"http://127.0.0.1:{sink.server_address[1]}/hook",
                                              "headers": {"Authorization": "Bearer hook-secret"}})
        with Pusher(reg) as p:
            pushed = push_image(p, unique_repo, "v1")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                events = [e for auth, env in got for e in env["events"]
                          if e["action"] == "push" and e["target"].get("tag") == "v1"]
            if events:
                break
            time.sleep(0.05)
        assert events and events[0]["target"]["digest"] == pushed.digest
        assert got[0][0] == "Bearer hook-secret"
    finally:
        sink.shutdown()
        sink.server_close()


def test_skopeo_copy_preserves_digests(source_registry, target_registry, unique_repo):
    with Pusher(source_registry) as p:
        idx = push_index(p, unique_repo, "v1")
    skopeo_copy(f"{source_registry.host}/{unique_repo}:v1", f"{target_registry.host}/{unique_repo}:v1")
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == idx.digest


def test_local_env(local_env):
    assert os.environ["IMPORT_PLAIN_HTTP_REGISTRIES"] == os.environ["IMPORT_ALLOWED_PRIVATE_HOSTS"] == "127.0.0.1"
    assert json.loads(local_env.auth_file.read_text()) == {}
    local_env.write_auth({"127.0.0.1:5000": ALICE})
    assert json.loads(local_env.auth_file.read_text())["auths"]["127.0.0.1:5000"]["auth"]
    assert os.environ["HOME"] == str(local_env.home)
