"""NoForce/Force, --platform, foreign layers, the limits, a corrupted source blob and the host
policy: each through the CLI against real registries, checked the way a user would (skopeo
digests, tag lists, blob HEADs, the one `error:` line).
"""
from __future__ import annotations

import os
import socket
import threading

import pytest

from tests.support.images import DOCKER_FOREIGN, DOCKER_MANIFEST, Pusher, _odd_json, push_image, push_index
from tests.support.skopeo import skopeo_digest, skopeo_raw
from tests.test_cli_import import blob_present, error_line, run_cli, run_json


def _no_tag(registry, repo: str, tag: str) -> bool:
    with Pusher(registry) as t:
        return t.get_manifest(repo, tag).status_code == 404


# ---- NoForce / Force ----------------------------------------------------------------------------

def test_noforce_conflict_fails_before_copying_and_force_overwrites(capsys, local_env, source_registry,
                                                                    target_registry, unique_repo):
    with Pusher(source_registry) as p:
        new = push_index(p, unique_repo, "v1")
    with Pusher(target_registry) as t:
        old = push_image(t, unique_repo, "v1", layers=[700])
    src = f"{source_registry.host}/{unique_repo}:v1"
    rc, out, err = run_cli(capsys, "--source", src, "--name", target_registry.host,
                           "--image", f"{unique_repo}:v1", "--image", f"{unique_repo}:fresh")
    assert rc == 1 and out == ""
    line = error_line(err)
    assert f"{unique_repo}:v1" in line and old.digest in line and "--force" in line
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == old.digest  # unchanged
    assert _no_tag(target_registry, unique_repo, "fresh")  # the other target was not tagged either
    with Pusher(target_registry) as t:
        assert not any(blob_present(t, unique_repo, d) for d, _ in new.blobs)  # not one blob uploaded
        assert t.get_manifest(unique_repo, new.digest).status_code == 404
        assert all(t.get_manifest(unique_repo, c.digest).status_code == 404 for c in new.children)

    res = run_json(capsys, "--source", src, "--name", target_registry.host, "--force",
                   "--image", f"{unique_repo}:v1", "--image", f"{unique_repo}:fresh")
    assert sorted(res["tags"]) == [f"{unique_repo}:fresh", f"{unique_repo}:v1"]
    assert res["blobs"]["copied"] == len(new.blobs)
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == new.digest
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:fresh") == new.digest


def test_same_digest_already_tagged_is_success_with_nothing_copied(capsys, local_env, source_registry,
                                                                   target_registry, unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", media="docker")
    src = f"{source_registry.host}/{unique_repo}:v1"
    run_json(capsys, "--source", src, "--name", target_registry.host)
    for extra in ([], ["--force"]):
        res = run_json(capsys, "--source", src, "--name", target_registry.host, *extra)
        assert res["digest"] == pushed.digest and res["tags"] == [f"{unique_repo}:v1"]
        assert res["blobs"] == {"copied": 0, "skipped": len(pushed.blobs), "mounted": 0} and res["bytes"] == 0
        assert res["manifests"] == 1
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest


# ---- --platform ---------------------------------------------------------------------------------

@pytest.mark.parametrize("media", ["oci", "docker"])
def test_platform_picks_that_child(capsys, local_env, source_registry, target_registry, unique_repo, media):
    with Pusher(source_registry) as p:
        idx = push_index(p, unique_repo, "v1", media=media,
                         platforms=[("linux", "amd64", None), ("linux", "arm64", "v8"), ("linux", "arm", "v7")])
    arm64 = idx.children[1]
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                   "--platform", "linux/arm64")
    assert res["digest"] == arm64.digest and res["mediaType"] == arm64.media_type and res["manifests"] == 1
    assert res["blobs"]["copied"] == len(arm64.blobs) and res["bytes"] == arm64.total_blob_bytes
    assert skopeo_raw(f"{target_registry.host}/{unique_repo}:v1") == arm64.raw
    with Pusher(target_registry) as t:  # the other platforms' blobs were not copied
        others = {d for c in (idx.children[0], idx.children[2]) for d, _ in c.blobs}
        assert not any(blob_present(t, unique_repo, d) for d in others)


def test_missing_platform_is_a_clear_error(capsys, local_env, source_registry, target_registry, unique_repo):
    with Pusher(source_registry) as p:
        push_index(p, unique_repo, "v1")
    rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1",
                           "--name", target_registry.host, "--platform", "windows/amd64")
    assert rc == 1 and out == ""
    line = error_line(err)
    assert "windows/amd64" in line and "linux/amd64" in line and "linux/arm64" in line
    assert _no_tag(target_registry, unique_repo, "v1")


# ---- foreign layers -----------------------------------------------------------------------------

@pytest.mark.parametrize("media", ["docker", "oci"])
def test_foreign_layers_are_skipped_by_default(capsys, local_env, source_registry, target_registry, unique_repo,
                                               media):
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", media=media, foreign_layers=2)
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host)
    assert res["digest"] == pushed.digest and res["blobs"]["copied"] == len(pushed.blobs)
    assert skopeo_raw(f"{target_registry.host}/{unique_repo}:v1") == pushed.raw  # urls and all
    with Pusher(target_registry) as t:
        assert all(blob_present(t, unique_repo, d) for d, _ in pushed.blobs)
        assert not any(blob_present(t, unique_repo, f["digest"]) for f in pushed.foreign)


def test_copy_foreign_layers_without_the_blob_in_the_source_is_a_clear_error(capsys, local_env, source_registry,
                                                                             target_registry, unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", media="docker", foreign_layers=1)
    foreign = pushed.foreign[0]["digest"]
    rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1",
                           "--name", target_registry.host, "--copy-foreign-layers")
    assert rc == 1 and out == ""
    line = error_line(err)
    assert foreign in line and "foreign" in line and "--copy-foreign-layers" in line
    assert _no_tag(target_registry, unique_repo, "v1")


def test_copy_foreign_layers_copies_them_when_the_source_has_them(capsys, local_env, source_registry,
                                                                  target_registry, unique_repo):
    with Pusher(source_registry) as p:
        data = os.urandom(900)
        foreign = p.blob(unique_repo, data, DOCKER_FOREIGN) | {"urls": ["https://foreign.example.invalid/x"]}
        layer = p.blob(unique_repo, os.urandom(600), "application/vnd.docker.image.rootfs.diff.tar.gzip")
        cfg = p.blob(unique_repo, _odd_json({"architecture": "amd64", "os": "windows", "rootfs": {
            "type": "layers", "diff_ids": [foreign["digest"], layer["digest"]]}}),
            "application/vnd.docker.container.image.v1+json")
        raw = _odd_json({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": cfg,
                         "layers": [foreign, layer]})
        digest = p.manifest(unique_repo, "v1", raw, DOCKER_MANIFEST)
    src = f"{source_registry.host}/{unique_repo}:v1"
    res = run_json(capsys, "--source", src, "--name", target_registry.host, "--image", f"{unique_repo}/default:v1")
    assert res["blobs"]["copied"] == 2 and res["bytes"] == cfg["size"] + layer["size"]
    res = run_json(capsys, "--source", src, "--name", target_registry.host, "--copy-foreign-layers")
    assert res["digest"] == digest and res["blobs"]["copied"] == 3
    assert res["bytes"] == len(data) + cfg["size"] + layer["size"]
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == digest
    with Pusher(target_registry) as t:
        assert t.get_blob(unique_repo, foreign["digest"]).content == data
        assert not blob_present(t, f"{unique_repo}/default", foreign["digest"])


# ---- limits -------------------------------------------------------------------------------------

def test_max_manifests_limit(capsys, local_env, monkeypatch, source_registry, target_registry, unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1")  # 3 manifests: the index and two images
    src = f"{source_registry.host}/{unique_repo}:v1"
    monkeypatch.setenv("IMPORT_MAX_MANIFESTS", "2")
    rc, out, err = run_cli(capsys, "--source", src, "--name", target_registry.host)
    assert rc == 1 and out == ""
    assert "IMPORT_MAX_MANIFESTS=2" in error_line(err)
    assert _no_tag(target_registry, unique_repo, "v1")
    with Pusher(target_registry) as t:
        assert not any(blob_present(t, unique_repo, d) for d, _ in pushed.blobs)
    monkeypatch.setenv("IMPORT_MAX_MANIFESTS", "3")
    assert run_json(capsys, "--source", src, "--name", target_registry.host)["manifests"] == 3
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest


def test_max_manifests_counts_nested_indexes(capsys, local_env, monkeypatch, source_registry, target_registry,
                                             unique_repo):
    with Pusher(source_registry) as p:
        push_index(p, unique_repo, "v1", nested=True)  # 4 manifests: index -> index -> two images
    monkeypatch.setenv("IMPORT_MAX_MANIFESTS", "3")
    rc, _, err = run_cli(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1",
                         "--name", target_registry.host)
    assert rc == 1 and "IMPORT_MAX_MANIFESTS=3" in error_line(err)
    assert _no_tag(target_registry, unique_repo, "v1")


def test_layer_size_limit_applies_to_public_sources_only(capsys, local_env, monkeypatch, source_registry,
                                                         target_registry, unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", layers=[500, 5000])
    big = next(d for d, size in pushed.blobs if size == 5000)
    src = f"{source_registry.host}/{unique_repo}:v1"
    monkeypatch.setenv("IMPORT_MAX_LAYER_BYTES_PUBLIC", "4096")
    monkeypatch.setenv("IMPORT_PUBLIC_REGISTRIES", f"docker.io,{source_registry.host}")
    rc, out, err = run_cli(capsys, "--source", src, "--name", target_registry.host)
    assert rc == 1 and out == ""
    line = error_line(err)
    assert big in line and "5000" in line and "IMPORT_MAX_LAYER_BYTES_PUBLIC=4096" in line
    assert _no_tag(target_registry, unique_repo, "v1")
    with Pusher(target_registry) as t:
        assert not any(blob_present(t, unique_repo, d) for d, _ in pushed.blobs)
    # the same source, not public (the default list: Docker Hub, MCR, ...): the limit does not apply
    monkeypatch.delenv("IMPORT_PUBLIC_REGISTRIES")
    res = run_json(capsys, "--source", src, "--name", target_registry.host)
    assert res["bytes"] == pushed.total_blob_bytes
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest


# ---- a corrupted source blob --------------------------------------------------------------------

@pytest.mark.parametrize("damage, names", [("flip", "digest mismatch"), ("truncate", "the descriptor declares")])
def test_corrupted_source_blob_fails_naming_the_digest_and_tags_nothing(capsys, local_env, source_registry,
                                                                        target_registry, unique_repo, damage, names):
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1", layer_size=4000)
    victim = pushed.children[1].blobs[-1][0]  # a layer of the second image
    path = source_registry.blob_data_path(victim)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[-10:]
    path.write_bytes(bytes(data))
    rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1",
                           "--name", target_registry.host, "--image", f"{unique_repo}:v1",
                           "--repository", f"{unique_repo}/untagged")
    assert rc == 1 and out == ""
    line = error_line(err)
    assert victim in line and names in line
    assert _no_tag(target_registry, unique_repo, "v1")
    with Pusher(target_registry) as t:
        assert not blob_present(t, unique_repo, victim)
        assert t.get_manifest(unique_repo, pushed.digest).status_code == 404
        assert t.get_manifest(f"{unique_repo}/untagged", pushed.digest).status_code == 404
        assert t.get_manifest(unique_repo, pushed.children[1].digest).status_code == 404
        assert t.tags(unique_repo) == [] and t.tags(f"{unique_repo}/untagged") == []


# ---- host policy ----------------------------------------------------------------------------------

class _Listener:
    """A loopback TCP port that counts connections (and answers none of them)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        self.sock.close()


def test_loopback_source_not_allow_listed_is_refused_without_contact(capsys, local_env, monkeypatch,
                                                                     target_registry, unique_repo):
    listener = _Listener()
    try:
        # Only the target's exact host:port is allowed (it is also trusted as the target).
        monkeypatch.setenv("IMPORT_ALLOWED_PRIVATE_HOSTS", target_registry.host)
        for source in (f"127.0.0.1:{listener.port}/{unique_repo}:v1", f"localhost:{listener.port}/{unique_repo}:v1"):
            rc, out, err = run_cli(capsys, "--source", source, "--name", target_registry.host)
            assert rc == 1 and out == ""
            line = error_line(err)
            assert f"source registry {source.split('/')[0]} is not allowed" in line
            assert "IMPORT_ALLOWED_PRIVATE_HOSTS" in line
            assert "loopback" in line
        monkeypatch.delenv("IMPORT_ALLOWED_PRIVATE_HOSTS")
        rc, _, err = run_cli(capsys, "--source", f"127.0.0.1:{listener.port}/{unique_repo}:v1",
                             "--name", target_registry.host)
        assert rc == 1 and "loopback" in error_line(err)
        assert listener.accepted == 0
    finally:
        listener.close()
