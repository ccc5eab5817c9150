"""The `python -m importcore import` CLI against real registries: every shape, every target mode,
blob reuse, usage errors and the --output json contract (README.md, "CLI — the flags of az acr import").

Most runs are in-process (`importcore.cli.main`) for speed; two run the real module in a
subprocess to prove the exit codes and that no traceback leaks.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import stamina

from importcore.cli import main
from tests.support.images import (Pusher, push_artifact_empty_config, push_helm_chart, push_image, push_index,
                                  sha256)
from tests.support.skopeo import skopeo_digest, skopeo_raw

ROOT = Path(__file__).resolve().parent.parent


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """main([...]) in-process -> (exit code, stdout, stderr); SystemExit (argparse) counts as a code."""
    capsys.readouterr()
    try:
        rc = main(["import", *args])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys, *args: str) -> dict:
    rc, out, err = run_cli(capsys, *args, "--output", "json")
    assert rc == 0, err
    assert err == ""
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


def error_line(err: str) -> str:
    """The single `error: ...` line a failed run must print, and nothing else (no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def blob_present(pusher: Pusher, repo: str, digest: str) -> bool:
    return pusher.request("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 200


def _shapes():
    return {
        "oci-image": lambda p, r: push_image(p, r, "v1"),
        "docker-image": lambda p, r: push_image(p, r, "v1", media="docker"),
        "oci-index": lambda p, r: push_index(p, r, "v1"),
        "docker-list": lambda p, r: push_index(p, r, "v1", media="docker"),
        "nested-index": lambda p, r: push_index(p, r, "v1", nested=True),
        "helm-chart": lambda p, r: push_helm_chart(p, r, "v1"),
        "artifact-empty-config": lambda p, r: push_artifact_empty_config(p, r, "v1"),
    }


def _manifest_count(pushed) -> int:
    return 1 + sum(_manifest_count(c) for c in pushed.children)


# ---- shapes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", list(_shapes()))
def test_every_shape_is_copied_byte_for_byte(capsys, local_env, source_registry, target_registry, unique_repo,
                                             shape):
    with Pusher(source_registry) as p:
        pushed = _shapes()[shape](p, unique_repo)
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host)
    assert skopeo_raw(f"{target_registry.host}/{unique_repo}:v1") == pushed.raw
    assert res["digest"] == pushed.digest == skopeo_digest(f"{source_registry.host}/{unique_repo}:v1")
    assert res["mediaType"] == pushed.media_type
    assert res["tags"] == [f"{unique_repo}:v1"]
    assert res["manifests"] == _manifest_count(pushed)
    assert res["blobs"] == {"copied": len(pushed.blobs), "skipped": 0, "mounted": 0}
    assert res["bytes"] == pushed.total_blob_bytes
    with Pusher(target_registry) as t:
        for digest, size in pushed.blobs:  # every blob arrived, whole and unaltered
            data = t.get_blob(unique_repo, digest).content
            assert len(data) == size and sha256(data) == digest
        for child in pushed.children:  # child manifests pushed by digest
            assert t.get_manifest(unique_repo, child.digest).content == child.raw


# ---- targets and modes ---------------------------------------------------------------------------

def test_image_targets_repeatable_with_and_without_tag(capsys, local_env, source_registry, target_registry,
                                                       unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "1.2")
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:1.2", "--name", target_registry.host,
                   "--image", f"{unique_repo}/a:custom", "--image", f"{unique_repo}/b")
    assert sorted(res["tags"]) == [f"{unique_repo}/a:custom", f"{unique_repo}/b:1.2"]
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}/a:custom") == pushed.digest
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}/b:1.2") == pushed.digest  # the source's tag
    with Pusher(target_registry) as t:
        assert t.tags(f"{unique_repo}/a") == ["custom"]
        assert t.tags(f"{unique_repo}/b") == ["1.2"]
        assert t.tags(unique_repo) == []  # --image replaces the default target


def test_repository_imports_untagged(capsys, local_env, source_registry, target_registry, unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1")
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                   "--repository", f"{unique_repo}/untagged")
    assert res["tags"] == [] and res["digest"] == pushed.digest
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}/untagged@{pushed.digest}") == pushed.digest
    with Pusher(target_registry) as t:
        assert t.tags(f"{unique_repo}/untagged") == []
        assert t.tags(unique_repo) == []


def test_source_by_digest(capsys, local_env, source_registry, target_registry, unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, None, media="docker")  # exists by digest only
    src = f"{source_registry.host}/{unique_repo}@{pushed.digest}"
    res = run_json(capsys, "--source", src, "--name", target_registry.host, "--image", f"{unique_repo}:pinned")
    assert res["tags"] == [f"{unique_repo}:pinned"]
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:pinned") == pushed.digest
    # no --image: the source repository, untagged (there is no tag to give it)
    other = f"{unique_repo}-bare"
    with Pusher(source_registry) as p:
        pushed2 = push_image(p, other, None)
    res = run_json(capsys, "--source", f"{source_registry.host}/{other}@{pushed2.digest}",
                   "--name", target_registry.host)
    assert res["tags"] == []
    assert skopeo_digest(f"{target_registry.host}/{other}@{pushed2.digest}") == pushed2.digest
    with Pusher(target_registry) as t:
        assert t.tags(other) == []
    # an --image without a tag cannot default to the source's: usage error
    rc, _, err = run_cli(capsys, "--source", src, "--name", target_registry.host, "--image", f"{unique_repo}/x")
    assert rc == 2 and "needs a tag" in error_line(err)


def test_target_registry_from_environment(capsys, local_env, monkeypatch, source_registry, target_registry,
                                          unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_helm_chart(p, unique_repo, "0.3.0")
    monkeypatch.setenv("IMPORT_TARGET_REGISTRY", target_registry.host)
    rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/{unique_repo}:0.3.0")
    assert rc == 0, err
    assert pushed.digest in out and f"{unique_repo}:0.3.0" in out  # the text summary
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:0.3.0") == pushed.digest


# ---- blobs: skip, mount ----------------------------------------------------------------------------

def test_reimport_into_another_repo_of_the_target_mounts(capsys, local_env, source_registry, target_registry,
                                                         unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1")
    src = f"{source_registry.host}/{unique_repo}:v1"
    first = run_json(capsys, "--source", src, "--name", target_registry.host)
    assert first["blobs"] == {"copied": len(pushed.blobs), "skipped": 0, "mounted": 0}
    # Later, the same image into another repository of the target: its blobs are already in
    # the registry (under the source's path), so they are mounted, not transferred again.
    res = run_json(capsys, "--source", src, "--name", target_registry.host, "--image", f"{unique_repo}/mirror:v1")
    assert res["blobs"] == {"copied": 0, "skipped": 0, "mounted": len(pushed.blobs)}
    assert res["bytes"] == 0
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}/mirror:v1") == pushed.digest


def test_several_target_repositories_copy_once_then_mount(capsys, local_env, source_registry, target_registry,
                                                          unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", layers=[2000, 3000])
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                   "--image", f"{unique_repo}/x:v1", "--image", f"{unique_repo}/y:v1")
    assert res["blobs"] == {"copied": len(pushed.blobs), "skipped": 0, "mounted": len(pushed.blobs)}
    assert res["bytes"] == pushed.total_blob_bytes
    for repo in (f"{unique_repo}/x", f"{unique_repo}/y"):
        assert skopeo_digest(f"{target_registry.host}/{repo}:v1") == pushed.digest


def test_same_source_and_target_registry_mounts(capsys, local_env, source_registry, unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1", media="docker")
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", source_registry.host,
                   "--image", f"{unique_repo}-copy:v2")
    assert res["blobs"] == {"copied": 0, "skipped": 0, "mounted": len(pushed.blobs)}
    assert res["bytes"] == 0
    assert skopeo_digest(f"{source_registry.host}/{unique_repo}-copy:v2") == pushed.digest


def test_partial_target_skips_present_blobs(capsys, local_env, source_registry, target_registry, unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", layers=[3000, 4000, 5000])
        present = pushed.blobs[1:3]  # two layers, fetched from the source and pre-seeded in the target
        seeded = [p.get_blob(unique_repo, d).content for d, _ in present]
    with Pusher(target_registry) as t:
        for data in seeded:
            t.blob(unique_repo, data)
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host)
    assert res["blobs"] == {"copied": len(pushed.blobs) - 2, "skipped": 2, "mounted": 0}
    assert res["bytes"] == pushed.total_blob_bytes - sum(size for _, size in present)
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest


# ---- CLI usage ------------------------------------------------------------------------------------

@pytest.mark.parametrize("source, names", [
    ("127.0.0.1:5000/Upper/case:v1", "lowercase"),
    ("127.0.0.1:5000/repo:-bad", "'-bad'"),
    ("127.0.0.1:5000/repo@sha256:1234", "digest"),
    ("127.0.0.1:5000/repo@md5:" + "a" * 32, "digest"),
    ("127.0.0.1:5000/re..po:v1", "'re..po'"),
    ("", "empty"),
])
def test_bad_source_reference_is_a_usage_error(capsys, local_env, target_registry, source, names):
    rc, out, err = run_cli(capsys, "--source", source, "--name", target_registry.host)
    assert rc == 2 and out == ""
    assert names in error_line(err)


@pytest.mark.parametrize("flags, names", [
    (["--image", "UP:v1"], "lowercase"),
    (["--image", "repo:bad tag"], "bad tag"),
    (["--image", "repo@sha256:" + "a" * 64], "not a digest"),
    (["--repository", "repo:v1"], "takes no tag"),
    (["--platform", "linux"], "platform"),
    (["--username", "u"], "--password"),
    (["--registry", "/subscriptions/x/resourceGroups/y/providers/Microsoft.ContainerRegistry/registries/z"],
     "registry resource ID"),
    (["--name", "bad_host!"], "invalid registry"),
])
def test_bad_target_or_flag_is_a_usage_error(capsys, local_env, target_registry, flags, names):
    rc, out, err = run_cli(capsys, "--source", "127.0.0.1:5000/ok:v1", "--name", target_registry.host, *flags)
    assert rc == 2 and out == ""
    assert names in error_line(err)


@pytest.mark.parametrize("setting, value, names", [
    ("IMPORT_MAX_MANIFESTS", "0", "IMPORT_MAX_MANIFESTS=0"),
    ("IMPORT_MAX_LAYER_BYTES_PUBLIC", "2GB", "IMPORT_MAX_LAYER_BYTES_PUBLIC='2GB'"),
])
def test_bad_setting_is_a_usage_error(capsys, local_env, monkeypatch, source_registry, target_registry,
                                      setting, value, names):
    monkeypatch.setenv(setting, value)
    rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/x:v1", "--name", target_registry.host)
    assert rc == 2 and out == "" and names in error_line(err)


def test_unreadable_auth_file_is_a_usage_error(capsys, local_env, source_registry, target_registry):
    local_env.auth_file.write_text("{not json")
    rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/x:v1", "--name", target_registry.host)
    assert rc == 2 and out == ""
    assert str(local_env.auth_file) in error_line(err)


def test_unreachable_source_names_host_and_port(capsys, local_env, target_registry):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with stamina.set_testing(True, attempts=2):  # the retries themselves, without their backoff
        rc, out, err = run_cli(capsys, "--source", f"127.0.0.1:{port}/x:v1", "--name", target_registry.host)
    assert rc == 1 and out == ""
    line = error_line(err)
    assert f"connection to 127.0.0.1:{port} failed" in line and "x:v1" in line


def test_no_target_registry_is_a_usage_error(capsys, local_env, monkeypatch, source_registry):
    monkeypatch.delenv("IMPORT_TARGET_REGISTRY", raising=False)
    rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/whatever:v1")
    assert rc == 2 and out == ""
    assert "no target registry" in error_line(err)


def readme_json_example() -> dict:
    """The object README.md shows under "`--output json` prints one object": the contract scripts rely on."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("`--output json` prints one object:", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    return json.loads(block)


def test_json_output_is_the_readme_contract_with_true_counts(capsys, local_env, source_registry, target_registry,
                                                             unique_repo):
    contract = readme_json_example()
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", layers=[1000], foreign_layers=1)
    source = f"{source_registry.host}/{unique_repo}:v1"
    res = run_json(capsys, "--source", source, "--name", target_registry.host)
    assert list(res) == list(contract) and list(res["blobs"]) == list(contract["blobs"])  # keys, in order
    assert isinstance(res.pop("seconds"), float)
    assert res == {"digest": pushed.digest, "sourceDigest": pushed.digest, "mediaType": pushed.media_type,
                   "tags": [f"{unique_repo}:v1"],
                   "repositories": [unique_repo], "manifests": 1, "blobs": {"copied": 2, "skipped": 0, "mounted": 0},
                   "bytes": pushed.total_blob_bytes, "foreignLayersSkipped": 1}
    # The same import again: nothing moves, and the counts still describe the image.
    again = run_json(capsys, "--source", source, "--name", target_registry.host)
    assert list(again) == list(contract)
    assert isinstance(again.pop("seconds"), float)
    assert again == {"digest": pushed.digest, "sourceDigest": pushed.digest, "mediaType": pushed.media_type,
                     "tags": [f"{unique_repo}:v1"],
                     "repositories": [unique_repo], "manifests": 1,
                     "blobs": {"copied": 0, "skipped": 2, "mounted": 0}, "bytes": 0, "foreignLayersSkipped": 1}


def test_a_no_op_reimport_counts_what_is_already_there(capsys, local_env, source_registry, target_registry,
                                                       unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1")
    args = ("--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
            "--image", f"{unique_repo}/a:v1", "--image", f"{unique_repo}/b:v1")
    first = run_json(capsys, *args)
    assert (first["manifests"], first["bytes"]) == (3, pushed.total_blob_bytes)
    assert first["blobs"] == {"copied": len(pushed.blobs), "skipped": 0, "mounted": len(pushed.blobs)}
    again = run_json(capsys, *args)
    assert again["repositories"] == [f"{unique_repo}/a", f"{unique_repo}/b"]
    assert (again["manifests"], again["bytes"], again["foreignLayersSkipped"]) == (3, 0, 0)
    assert again["blobs"] == {"copied": 0, "skipped": 2 * len(pushed.blobs), "mounted": 0}
    rc, out, err = run_cli(capsys, *args)
    assert rc == 0 and err == ""
    assert f"3 manifest(s), blobs: 0 copied, 0 mounted, {2 * len(pushed.blobs)} skipped, 0 bytes" in out


# ---- the real process ---------------------------------------------------------------------------

def _subprocess(env_extra: dict, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"} | env_extra
    return subprocess.run([sys.executable, "-m", "importcore", "import", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_subprocess_success_and_failure_exit_codes(local_env, source_registry, target_registry, unique_repo):
    env = {k: os.environ[k] for k in ("IMPORT_PLAIN_HTTP_REGISTRIES", "IMPORT_ALLOWED_PRIVATE_HOSTS",
                                      "REGISTRY_AUTH_FILE", "HOME")}
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1")
    ok = _subprocess(env, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                     "--output", "json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["digest"] == pushed.digest and ok.stderr == ""
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest

    missing = _subprocess(env, "--source", f"{source_registry.host}/{unique_repo}:nope", "--name",
                          target_registry.host)
    assert missing.returncode == 1 and missing.stdout == ""
    line = error_line(missing.stderr)
    assert f"{unique_repo}:nope" in line and "404" in line and "MANIFEST_UNKNOWN" in line

    usage = _subprocess(env, "--source", "127.0.0.1:1/Bad:v1", "--name", target_registry.host)
    assert usage.returncode == 2 and "lowercase" in error_line(usage.stderr)

    argparse_usage = _subprocess(env, "--name", target_registry.host)  # --source missing
    assert argparse_usage.returncode == 2 and "Traceback" not in argparse_usage.stderr
    assert "--source" in argparse_usage.stderr


def test_a_target_prefixed_with_the_target_registry_is_a_usage_error(capsys, local_env):
    """`--image myacr.azurecr.io/app:1` into myacr.azurecr.io would create a repository named
    "myacr.azurecr.io/app"; a dotted first component for another name stays a valid path."""
    rc, out, err = run_cli(capsys, "--source", "127.0.0.1:5000/a:b", "--name", "myacr",
                           "--image", "myacr.azurecr.io/app:1")
    assert rc == 2 and "starts with the target registry's name" in error_line(err)


def test_serve_forwards_every_flag_it_takes(monkeypatch):
    """`serve`'s flags reach the local host; none is parsed and then dropped."""
    import importcore.devhost

    calls = []
    monkeypatch.setattr(importcore.devhost, "run", lambda **kw: calls.append(kw) or 0)
    assert main(["serve"]) == 0
    assert main(["serve", "--port", "7072", "--host", "0.0.0.0", "--app", "other_app", "--host-json", "h.json"]) == 0
    assert calls == [{"port": 7071, "host": "127.0.0.1", "app_module": "function_app", "host_json": None},
                     {"port": 7072, "host": "0.0.0.0", "app_module": "other_app", "host_json": Path("h.json")}]
