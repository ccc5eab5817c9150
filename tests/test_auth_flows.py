"""Auth through the CLI against real registries: Basic (htpasswd), the Docker token flow (a real
Distribution with `auth: token` and our token server), credentials from flags, from a docker
config.json (REGISTRY_AUTH_FILE, $DOCKER_CONFIG, ~/.docker) and identity (refresh) tokens.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ALICE, BOB
from tests.support.images import Pusher, push_image, push_index
from tests.support.skopeo import skopeo_digest
from tests.test_cli_import import blob_present, error_line, run_cli, run_json


def _auth_json(entries: dict[str, tuple[str, str]]) -> str:
    return json.dumps({"auths": {host: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()}
                                 for host, (u, p) in entries.items()}})


def _scope_set(token_request: dict) -> tuple:
    return tuple(sorted((name, tuple(sorted(actions))) for _, name, actions in token_request["scopes"]))


# ---- Basic (htpasswd) -----------------------------------------------------------------------------

def test_htpasswd_source_with_username_and_password(capsys, local_env, htpasswd_registry, target_registry,
                                                    unique_repo):
    with Pusher(htpasswd_registry, *ALICE) as p:
        pushed = push_index(p, unique_repo, "v1", media="docker")
    res = run_json(capsys, "--source", f"{htpasswd_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                   "--username", ALICE[0], "--password", ALICE[1])
    assert res["digest"] == pushed.digest and res["blobs"]["copied"] == len(pushed.blobs)
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest


def test_htpasswd_wrong_or_missing_password_is_401_and_never_echoed(capsys, local_env, htpasswd_registry,
                                                                    target_registry, unique_repo):
    with Pusher(htpasswd_registry, *ALICE) as p:
        push_image(p, unique_repo, "v1")
    src = f"{htpasswd_registry.host}/{unique_repo}:v1"
    wrong = "Wr0ng-Pa55word-do-not-echo"
    rc, out, err = run_cli(capsys, "--source", src, "--name", target_registry.host,
                           "--username", ALICE[0], "--password", wrong)
    assert rc == 1 and out == ""
    line = error_line(err)
    assert htpasswd_registry.host in line and "401" in line and "the credentials were refused" in line
    assert wrong not in out + err
    rc, out, err = run_cli(capsys, "--source", src, "--name", target_registry.host)
    assert rc == 1
    line = error_line(err)
    assert htpasswd_registry.host in line and "401" in line and "credentials are required" in line
    with Pusher(target_registry) as t:
        assert t.tags(unique_repo) == []


def test_credentials_from_registry_auth_file(capsys, local_env, htpasswd_registry, target_registry, unique_repo):
    with Pusher(htpasswd_registry, *ALICE) as p:
        pushed = push_image(p, unique_repo, "v1")
    local_env.write_auth({htpasswd_registry.host: ALICE})
    res = run_json(capsys, "--source", f"{htpasswd_registry.host}/{unique_repo}:v1", "--name", target_registry.host)
    assert res["digest"] == pushed.digest
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest
    # the flags win over the file: a wrong --password fails although the file is right
    rc, out, err = run_cli(capsys, "--source", f"{htpasswd_registry.host}/{unique_repo}:v1",
                           "--name", target_registry.host, "--image", f"{unique_repo}/b:v1",
                           "--username", ALICE[0], "--password", "nope-not-it")
    assert rc == 1 and "401" in error_line(err) and "nope-not-it" not in out + err


def test_credentials_from_docker_config_dir_then_home(capsys, local_env, monkeypatch, tmp_path, htpasswd_registry,
                                                      target_registry, unique_repo):
    with Pusher(htpasswd_registry, *ALICE) as p:
        pushed = push_image(p, unique_repo, "v1")
    src = f"{htpasswd_registry.host}/{unique_repo}:v1"
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(_auth_json({f"http://{htpasswd_registry.host}": ALICE}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    res = run_json(capsys, "--source", src, "--name", target_registry.host, "--image", f"{unique_repo}/a:v1")
    assert res["digest"] == pushed.digest
    monkeypatch.delenv("DOCKER_CONFIG")
    rc, _, err = run_cli(capsys, "--source", src, "--name", target_registry.host, "--image", f"{unique_repo}/b:v1")
    assert rc == 1 and "401" in error_line(err)  # no file anywhere now
    (local_env.home / ".docker").mkdir()
    (local_env.home / ".docker" / "config.json").write_text(_auth_json({htpasswd_registry.host: ALICE}))
    res = run_json(capsys, "--source", src, "--name", target_registry.host, "--image", f"{unique_repo}/b:v1")
    assert res["digest"] == pushed.digest
    for repo in (f"{unique_repo}/a", f"{unique_repo}/b"):
        assert skopeo_digest(f"{target_registry.host}/{repo}:v1") == pushed.digest


def test_htpasswd_target_with_credentials_from_the_auth_file(capsys, local_env, source_registry, htpasswd_registry,
                                                             unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1")
    rc, _, err = run_cli(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1",
                         "--name", htpasswd_registry.host)
    line = error_line(err)
    assert rc == 1 and htpasswd_registry.host in line and "401" in line
    assert "--username" not in line and "target registry's entry in REGISTRY_AUTH_FILE" in line  # not a source
    local_env.write_auth({htpasswd_registry.host: ALICE})
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", htpasswd_registry.host)
    assert res["digest"] == pushed.digest
    assert skopeo_digest(f"{htpasswd_registry.host}/{unique_repo}:v1", creds=ALICE) == pushed.digest


# ---- token auth -----------------------------------------------------------------------------------

def test_token_registry_as_source_and_as_target_with_cached_tokens(capsys, local_env, source_registry,
                                                                    token_registry, token_server, target_registry,
                                                                    unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1", layers_per_image=3)
    # into the token registry: bob's credentials from the auth file
    local_env.write_auth({token_registry.host: BOB})
    before = len(token_server.requests_for(unique_repo))
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", token_registry.host)
    fetched = token_server.requests_for(unique_repo)[before:]
    assert res["digest"] == pushed.digest and res["blobs"]["copied"] == len(pushed.blobs) == 8
    assert skopeo_digest(f"{token_registry.host}/{unique_repo}:v1", creds=BOB) == pushed.digest
    # 8 blobs x (HEAD, POST, PUT) + 3 manifests x (HEAD, PUT) and more, from 4 threads: one token
    # per scope set (here: pull,push on the repository), not one per request
    assert len(fetched) == len({_scope_set(r) for r in fetched}) == 1, fetched
    assert all(r["user"] == BOB[0] and r["status"] == 200 for r in fetched)

    # out of the token registry, into an anonymous target
    before = len(token_server.requests_for(unique_repo))
    res = run_json(capsys, "--source", f"{token_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                   "--image", f"{unique_repo}/out:v1")
    fetched = token_server.requests_for(unique_repo)[before:]
    assert res["digest"] == pushed.digest and res["blobs"]["copied"] == 8
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}/out:v1") == pushed.digest
    assert len(fetched) == len({_scope_set(r) for r in fetched}) == 1, fetched
    assert fetched[0]["user"] == BOB[0]  # the source's credentials come from the same auth file

    # token registry to itself: everything mounted
    res = run_json(capsys, "--source", f"{token_registry.host}/{unique_repo}:v1", "--name", token_registry.host,
                   "--image", f"{unique_repo}/copy:v1")
    assert res["blobs"] == {"copied": 0, "skipped": 0, "mounted": 8} and res["bytes"] == 0
    assert skopeo_digest(f"{token_registry.host}/{unique_repo}/copy:v1", creds=BOB) == pushed.digest

    # no credentials at all: an anonymous pull token (the default ACL lets anyone pull)
    local_env.auth_file.write_text("{}")
    before = len(token_server.requests_for(unique_repo))
    res = run_json(capsys, "--source", f"{token_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                   "--image", f"{unique_repo}/anon:v1")
    fetched = token_server.requests_for(unique_repo)[before:]
    assert res["digest"] == pushed.digest and res["blobs"]["copied"] == 8
    assert [r["user"] for r in fetched] == [None]


def test_token_registry_source_with_credentials_when_anonymous_is_denied(capsys, local_env, token_registry,
                                                                         token_server, target_registry, unique_repo):
    with Pusher(token_registry, *BOB) as p:
        pushed = push_image(p, unique_repo, "v1", media="docker")
    token_server.grant(None, unique_repo, [])  # anonymous may not even pull here
    src = f"{token_registry.host}/{unique_repo}:v1"
    rc, out, err = run_cli(capsys, "--source", src, "--name", target_registry.host)
    assert rc == 1 and out == ""
    line = error_line(err)
    assert token_registry.host in line and "401" in line
    res = run_json(capsys, "--source", src, "--name", target_registry.host, "--username", BOB[0],
                   "--password", BOB[1])
    assert res["digest"] == pushed.digest
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest
    wrong = "bobs-wrong-secret-xyz"
    rc, out, err = run_cli(capsys, "--source", src, "--name", target_registry.host, "--image", f"{unique_repo}/b:v1",
                           "--username", BOB[0], "--password", wrong)
    line = error_line(err)
    assert rc == 1 and "401" in line and token_registry.host in line and "username or password is wrong" in line
    assert wrong not in out + err


def test_password_only_is_an_identity_token(capsys, local_env, token_registry, token_server, target_registry,
                                            unique_repo):
    with Pusher(token_registry, *BOB) as p:
        pushed = push_image(p, unique_repo, "v1")
    token_server.grant(None, unique_repo, [])
    r = httpx.post(token_server.realm, data={"grant_type": "password", "username": BOB[0], "password": BOB[1],
                                             "service": token_server.service,
                                             "scope": f"repository:{unique_repo}:pull", "client_id": "tests"})
    refresh = r.raise_for_status().json()["refresh_token"]
    before = len(token_server.requests_for(unique_repo))
    res = run_json(capsys, "--source", f"{token_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                   f"--password={refresh}")  # '=': a base64url token may start with '-'
    assert res["digest"] == pushed.digest
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest
    used = token_server.requests_for(unique_repo)[before:]
    assert used and all(r["method"] == "POST" and r["grant_type"] == "refresh_token" and r["user"] == BOB[0]
                        for r in used)
    # the same token as a docker config.json `identitytoken` (what `docker login` stores for ACR)
    local_env.auth_file.write_text(json.dumps({"auths": {token_registry.host: {"identitytoken": refresh}}}))
    res = run_json(capsys, "--source", f"{token_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                   "--image", f"{unique_repo}/from-file:v1")
    assert res["digest"] == pushed.digest
    assert token_server.requests_for(unique_repo)[-1]["grant_type"] == "refresh_token"
    local_env.auth_file.write_text("{}")
    # an unknown identity token: refused by the token service, never echoed
    bogus = "not-a-real-refresh-token-123"
    rc, out, err = run_cli(capsys, "--source", f"{token_registry.host}/{unique_repo}:v1",
                           "--name", target_registry.host, "--image", f"{unique_repo}/b:v1", "--password", bogus)
    assert rc == 1 and out == ""
    line = error_line(err)
    assert token_registry.host in line and "401" in line and "identity token was refused" in line
    assert bogus not in err


def test_pull_only_grant_on_the_target_is_a_clear_error(capsys, local_env, source_registry, token_registry,
                                                        token_server, unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1")
    token_server.grant(BOB[0], unique_repo, ["pull"])
    local_env.write_auth({token_registry.host: BOB})
    rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1",
                           "--name", token_registry.host)
    assert rc == 1 and out == ""
    line = error_line(err)
    assert token_registry.host in line and unique_repo in line
    assert "401" in line and f"do not grant repository:{unique_repo}:" in line and "push" in line
    assert BOB[1] not in err
    with Pusher(token_registry, *BOB) as t:
        assert t.get_manifest(unique_repo, "v1").status_code == 404
        assert not any(blob_present(t, unique_repo, d) for d, _ in pushed.blobs)


def test_mount_from_a_repository_the_target_credentials_cannot_read_falls_back_to_upload(
        capsys, local_env, source_registry, token_registry, token_server, unique_repo):
    # The target already holds the blobs under the source's path, but bob may not read it there:
    # the cross-repository mount is refused, and the blobs are uploaded instead.
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", layers=[1500, 2500])
    local_env.write_auth({token_registry.host: BOB})
    run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", token_registry.host)
    token_server.grant(BOB[0], unique_repo, [])
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", token_registry.host,
                   "--image", f"{unique_repo}/other:v1")
    assert res["blobs"] == {"copied": len(pushed.blobs), "skipped": 0, "mounted": 0}
    assert skopeo_digest(f"{token_registry.host}/{unique_repo}/other:v1", creds=BOB) == pushed.digest


def test_subprocess_auth_failure_prints_one_line_and_no_secret(local_env, htpasswd_registry, target_registry,
                                                               unique_repo):
    with Pusher(htpasswd_registry, *ALICE) as p:
        push_image(p, unique_repo, "v1")
    wrong = "subprocess-Wrong-pw-42"
    proc = subprocess.run([sys.executable, "-m", "importcore", "import", "--source",
                           f"{htpasswd_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                           "-u", ALICE[0], "-p", wrong, "--output", "json"],
                          env=dict(os.environ), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 1 and proc.stdout == ""
    line = error_line(proc.stderr)
    assert htpasswd_registry.host in line and "401" in line
    assert wrong not in proc.stderr


def _cli(*args: str, stdin: str | None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "importcore", "import", *args, "--output", "json"],
                          env=dict(os.environ), capture_output=True, text=True, timeout=60,
                          input=stdin, stdin=subprocess.DEVNULL if stdin is None else None,
                          cwd=Path(__file__).resolve().parent.parent)


def test_password_stdin_keeps_the_password_off_the_command_line(local_env, registry_factory, target_registry,
                                                                 unique_repo):
    """`printf %s "$PW" | python -m importcore import ... -u U --password-stdin`, as docker login takes it;
    a password starting with '-' needs no `=` that way."""
    user = ("carol", "-dash-first-Pa55")
    registry = registry_factory("htpasswd", users=dict([user]))
    with Pusher(registry, *user) as p:
        pushed = push_image(p, unique_repo, "v1")
    proc = _cli("--source", f"{registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                "-u", user[0], "--password-stdin", stdin=user[1] + "\n")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["digest"] == pushed.digest
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest

    wrong = _cli("--source", f"{registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                 "-u", user[0], "--password-stdin", stdin="-wrong-Pa55\n")
    assert wrong.returncode == 1 and "401" in error_line(wrong.stderr) and "-wrong-Pa55" not in wrong.stderr


@pytest.mark.parametrize("flags, stdin, phrase", [
    (("-u", "carol", "--password-stdin", "-p", "x"), "pw\n", "--password and --password-stdin are mutually exclusive"),
    (("-u", "carol", "--password-stdin"), "", "--password-stdin: standard input held no password"),
    (("-u", "carol", "--password-stdin"), "\n", "--password-stdin: standard input held no password"),
    (("-u", "carol"), None, "--username needs --password (or --password-stdin)"),
])
def test_password_stdin_misuse_is_a_usage_error(local_env, target_registry, flags, stdin, phrase):
    proc = _cli("--source", "127.0.0.1:1/r:v1", "--name", target_registry.host, *flags, stdin=stdin)
    assert proc.returncode == 2 and proc.stdout == ""
    assert error_line(proc.stderr) == f"error: {phrase}"


def test_password_stdin_from_a_terminal_is_refused_rather_than_waited_for(local_env, target_registry):
    import pty

    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "importcore", "import", "--source", "127.0.0.1:1/r:v1",
                               "--name", target_registry.host, "-u", "carol", "--password-stdin"],
                              env=dict(os.environ), capture_output=True, text=True, timeout=60, stdin=terminal,
                              cwd=Path(__file__).resolve().parent.parent)
    finally:
        os.close(controller)
        os.close(terminal)
    assert proc.returncode == 2
    assert error_line(proc.stderr).startswith("error: --password-stdin: pipe the password in")
