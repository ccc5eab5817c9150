"""Size and shape limits against a hostile source: each case ends in one clear error, nothing
tagged in the (real) target, and the hostile server's own byte count shows the client stopped
reading at the cap instead of draining the body.

`server.sent` counts body bytes the server managed to hand to the kernel; the kernel buffers in
between (the server's send buffer is kept small, the client's receive buffer is not ours to
shrink) are the SLACK. Every oversized body offered is 100 MiB, far beyond cap + SLACK.
"""
from __future__ import annotations

import json

import pytest

from importcore.values.media import MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST
from importcore.engine.plan import MAX_INDEX_DEPTH
from tests.support.hostile import BearerAuth, HostileServer, MiB, Reply, endless, guard_connections, sha256
from tests.support.images import Pusher
from tests.test_cli_import import blob_present, error_line, run_cli

SLACK = 4 * MiB  # socket buffering between the server's write and the client's read (seen: ~1 MiB)
OFFERED = 100 * MiB
ERROR_BODY_CAP = 64 * 1024  # net/bodies.py MAX_ERROR_BODY, applied by net/transport.py
TOKEN_BODY_CAP = 256 * 1024  # auth/flow.py _MAX_TOKEN_BODY


@pytest.fixture
def source(monkeypatch, local_env):
    with HostileServer() as server:
        monkeypatch.setenv("IMPORT_ALLOWED_PRIVATE_HOSTS", server.host)
        guard_connections(monkeypatch)
        yield server


def _import(capsys, source: HostileServer, target_registry, repo: str, ref: str = "team/app:v1"):
    rc, out, err = run_cli(capsys, "--source", f"{source.host}/{ref}", "--name", target_registry.host,
                           "--image", f"{repo}:v1", "--repository", f"{repo}/untagged")
    return rc, out, err


def _failed(capsys, source, target_registry, repo: str, *words: str, ref: str = "team/app:v1") -> str:
    """Run the import; it must fail with one error line holding `words`, and nothing may be tagged."""
    rc, out, err = _import(capsys, source, target_registry, repo, ref)
    assert rc == 1 and out == "", err
    line = error_line(err)
    for word in words:
        assert word in line, line
    with Pusher(target_registry) as t:
        assert t.tags(repo) == [] and t.tags(f"{repo}/untagged") == []
    return line


def _manifest(config: dict, layers: list[dict], **extra) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers,
                       **extra}).encode()


# ---- manifests over 4 MiB --------------------------------------------------------------------------

OVERSIZE = {
    # declared length just over the cap, then the body
    "declared-cap+1": dict(length=MAX_MANIFEST_BYTES + 1, body=endless(MAX_MANIFEST_BYTES + 1)),
    # declared 100 MiB: refused on the header, the body is never read
    "declared-100MiB": dict(length=OFFERED, body=endless(OFFERED)),
    # chunked without a length: read up to the cap, then dropped
    "chunked-100MiB": dict(length=None, body=endless(OFFERED)),
    # neither length nor chunking: a body up to the connection's close
    "until-close-100MiB": dict(length=-1, body=endless(OFFERED)),
}


@pytest.mark.parametrize("shape", list(OVERSIZE))
def test_manifest_over_4_mib_is_refused_and_not_read_past_the_cap(capsys, source, target_registry, unique_repo,
                                                                  shape):
    source.on("GET", "/v2/team/app/manifests/v1", Reply(200, {"Content-Type": OCI_MANIFEST}, **OVERSIZE[shape]))
    _failed(capsys, source, target_registry, unique_repo, "manifest", f"{MAX_MANIFEST_BYTES}-byte limit")
    assert source.sent <= MAX_MANIFEST_BYTES + SLACK, source.sent
    assert not source.seen("GET", "/v2/team/app/blobs/")


# ---- a blob longer than its descriptor -------------------------------------------------------------

@pytest.mark.parametrize("declared", [True, False], ids=["declared-length", "chunked"])
def test_blob_longer_than_its_descriptor_is_aborted(capsys, source, target_registry, unique_repo, declared):
    raw, digest, (config, layer) = source.image("team/app", "v1", layers=[b"L" * 300_000])
    data = b"L" * layer["size"]

    def longer():
        yield data
        yield from endless(OFFERED)()

    source.on("GET", f"/v2/team/app/blobs/{layer['digest']}",
              Reply(200, {"Content-Type": "application/octet-stream"}, longer,
                    length=layer["size"] + OFFERED if declared else None))
    line = _failed(capsys, source, target_registry, unique_repo, layer["digest"],
                   f"more than the {layer['size']} bytes its descriptor declares")
    assert source.sent <= layer["size"] + SLACK, source.sent
    with Pusher(target_registry) as t:
        assert not blob_present(t, unique_repo, layer["digest"])
        assert t.get_manifest(unique_repo, digest).status_code == 404
    assert "Traceback" not in line


# ---- shapes: nesting, type confusion, digests -------------------------------------------------------

def _nest(source: HostileServer, levels: int) -> tuple[str, str]:
    """`levels` indexes, each holding the next; the innermost holds an image. -> (top digest, image digest)"""
    raw, child, _ = source.image("team/app", None)
    image = child
    desc = {"mediaType": OCI_MANIFEST, "digest": child, "size": len(raw),
            "platform": {"os": "linux", "architecture": "amd64"}}
    for level in range(levels):
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc],
                           "annotations": {"level": str(level)}}).encode()
        tag = "v1" if level == levels - 1 else None
        child = source.manifest("team/app", tag, body, OCI_INDEX)
        desc = {"mediaType": OCI_INDEX, "digest": child, "size": len(body)}
    return child, image


def test_index_nesting_at_the_bound_is_imported(capsys, source, target_registry, unique_repo):
    top, _ = _nest(source, MAX_INDEX_DEPTH)
    rc, out, err = _import(capsys, source, target_registry, unique_repo)
    assert rc == 0, err
    with Pusher(target_registry) as t:
        assert t.get_manifest(unique_repo, "v1").headers.get("docker-content-digest") == top


def test_index_nesting_deeper_than_the_bound_is_refused(capsys, source, target_registry, unique_repo):
    _, image = _nest(source, MAX_INDEX_DEPTH + 1)
    _failed(capsys, source, target_registry, unique_repo, f"nested deeper than {MAX_INDEX_DEPTH} levels")
    assert not source.seen("GET", f"/v2/team/app/manifests/{image}")
    assert not source.seen("GET", "/v2/team/app/blobs/")


def _confusions(config: dict, layer: dict) -> dict[str, tuple[bytes, str, str]]:
    image = _manifest(config, [layer])
    index_child = {"mediaType": OCI_MANIFEST, "digest": sha256(image), "size": len(image)}
    both = {"schemaVersion": 2, "config": config, "layers": [layer], "manifests": [index_child]}
    return {
        # body, Content-Type, words in the error
        "image-served-as-index": (image, OCI_INDEX, "but the registry sent Content-Type"),
        "index-served-as-image": (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                              "manifests": [index_child]}).encode(), OCI_MANIFEST,
                                  "but the registry sent Content-Type"),
        "both-untyped": (json.dumps(both).encode(), "application/json", "both 'manifests' and 'layers'"),
        "both-as-image": (json.dumps({**both, "mediaType": OCI_MANIFEST}).encode(), OCI_MANIFEST,
                          "both 'manifests' and 'layers'"),
        "both-as-index": (json.dumps({**both, "mediaType": OCI_INDEX}).encode(), OCI_INDEX,
                          "both 'manifests' and 'layers'"),
        "schema1": (json.dumps({"schemaVersion": 1, "name": "team/app", "fsLayers": []}).encode(),
                    "application/vnd.docker.distribution.manifest.v1+prettyjws", "schema 1"),
    }


@pytest.mark.parametrize("case", ["image-served-as-index", "index-served-as-image", "both-untyped", "both-as-image",
                                  "both-as-index", "schema1"])
def test_ambiguous_or_mistyped_manifests_are_refused(capsys, source, target_registry, unique_repo, case):
    _, _, (config, layer) = source.image("team/app", None)
    body, content_type, words = _confusions(config, layer)[case]
    source.manifest("team/app", "v1", body, content_type)
    _failed(capsys, source, target_registry, unique_repo, words)
    assert not source.seen("GET", "/v2/team/app/blobs/")


@pytest.mark.parametrize("digest", ["sha256:" + "A" * 64, "sha256:../../../../v2/other/manifests/latest",
                                    "sha256:" + "a" * 63, "md5:" + "a" * 32, "sha256:" + "a" * 64 + "/../x"])
def test_invalid_descriptor_digests_are_refused_before_use(capsys, source, target_registry, unique_repo, digest):
    _, _, (config, layer) = source.image("team/app", None)
    source.manifest("team/app", "v1", _manifest(config, [dict(layer, digest=digest)]), OCI_MANIFEST)
    _failed(capsys, source, target_registry, unique_repo, "invalid digest")
    assert not source.seen("GET", "/v2/team/app/blobs/")
    assert all(".." not in s.path and "other" not in s.path for s in source.requests)


def test_child_manifest_whose_bytes_do_not_match_its_digest_is_refused(capsys, source, target_registry,
                                                                       unique_repo):
    raw, child, _ = source.image("team/app", None)
    other = _manifest({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"{}"),
                       "size": 2}, [])
    source.on("GET", f"/v2/team/app/manifests/{child}", Reply(200, {"Content-Type": OCI_MANIFEST}, other))
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": len(raw)}]}).encode()
    source.manifest("team/app", "v1", index, OCI_INDEX)
    _failed(capsys, source, target_registry, unique_repo, "not the digest asked for", child[:19])


# ---- bodies the client only needs a prefix of ------------------------------------------------------------

@pytest.mark.parametrize("declared", [True, False], ids=["declared-length", "chunked"])
def test_error_body_of_100_mib_is_read_only_up_to_the_cap(capsys, source, target_registry, unique_repo, declared):
    head = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"'
    body = lambda: iter([head, *endless(OFFERED)()])  # noqa: E731
    source.on("GET", "/v2/team/app/manifests/v1",
              Reply(404, {"Content-Type": "application/json"}, body, length=len(head) + OFFERED if declared else None))
    _failed(capsys, source, target_registry, unique_repo, "404")
    assert source.sent <= ERROR_BODY_CAP + SLACK, source.sent


def test_401_challenge_with_a_100_mib_body_is_read_only_up_to_the_cap(capsys, source, target_registry, unique_repo):
    """httpx reads a 401's body itself before the auth flow's retry: the transport caps error bodies."""
    _, digest, _ = source.image("team/app", "v1")
    source.auth = BearerAuth("a-token")
    path = f"/v2/team/app/manifests/{digest}"  # fetched by the digest its HEAD named
    manifest = source.routes[("GET", path)]
    challenges = []

    def once_more(seen):  # the first GET (token already held) is challenged again, with a huge body
        if seen.method == "HEAD" or challenges:
            return manifest
        challenges.append(seen)
        return Reply(401, {"WWW-Authenticate": source.auth.challenge(source, seen)}, endless(OFFERED))

    source.on("GET", path, once_more)
    rc, out, err = _import(capsys, source, target_registry, unique_repo)
    assert rc == 0, err
    assert len(challenges) == 1 and len(source.seen("GET", "/token")) == 2
    assert source.sent <= ERROR_BODY_CAP + SLACK, source.sent


@pytest.mark.parametrize("status", [200, 401])
def test_token_endpoint_body_of_100_mib_is_capped(capsys, source, target_registry, unique_repo, status):
    source.image("team/app", "v1")
    source.auth = BearerAuth("a-token")
    source.on("GET", "/token", Reply(status, {"Content-Type": "application/json"}, endless(OFFERED, byte=b" ")))
    words = ["token service", "more than"] if status == 200 else ["token service", "refused the credentials"]
    _failed(capsys, source, target_registry, unique_repo, *words)
    assert source.sent <= TOKEN_BODY_CAP + SLACK, source.sent


@pytest.mark.parametrize("realm", ["http://0177.0.0.1/token", "http://[::1/token", "file:///etc/passwd",
                                   "javascript:alert(1)"])
def test_unusable_token_realms_fail_cleanly(capsys, source, target_registry, unique_repo, realm):
    source.image("team/app", "v1")
    source.auth = BearerAuth("a-token", realm=realm)
    _failed(capsys, source, target_registry, unique_repo, "unusable token realm")


def test_a_manifest_other_than_the_digest_its_head_named_is_refused(capsys, source, target_registry, unique_repo):
    """HEAD names digest A; the GET by A answers other bytes: the digest check refuses them."""
    raw, digest, _ = source.image("team/app", "v1")
    other = raw.replace(b'"schemaVersion": 2', b'"schemaVersion":  2')  # same meaning, other digest
    assert other != raw
    source.on("GET", f"/v2/team/app/manifests/{digest}",
              Reply(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, other))
    _failed(capsys, source, target_registry, unique_repo, digest, "not the digest asked for")
