"""Secrets stay out of logs, output and error texts.

A full import with a password (htpasswd source) and a bearer token (token-auth target) runs with
every logger at DEBUG (httpx, httpcore, importcore, azure, the root), stdout and stderr captured;
none of the password, the Basic header value, any issued token or any upload `_state` may appear.
Failed auths must not echo the password in the message, the traceback chain or to_dict(); URLs
a registry hands us (redirects with signatures, userinfo) appear only redacted.
"""
from __future__ import annotations

import base64
import logging
import traceback

import httpx
import pytest

from importcore.auth import Credential
from importcore.values.errors import AuthError
from importcore.net.hostpolicy import HostPolicy
from importcore.values.reference import Reference
from importcore.registry.client import RegistryClient
from importcore.registry.uploads import UploadSessions
from importcore.engine.request import ImportRequest, resolve_targets
from importcore.engine.runner import run_request
from importcore.values.settings import Settings
from tests.conftest import ALICE, BOB
from tests.support.hostile import HostileServer, Reply
from tests.support.images import Pusher, push_index
from tests.test_cli_import import error_line, run_cli, run_json

LOGGERS = ("", "httpx", "httpcore", "importcore", "azure", "urllib3")


@pytest.fixture
def all_logs(caplog):
    """Every logger at DEBUG into caplog; returns a function giving all text logged so far."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)

    def text() -> str:
        return caplog.text + "\n" + "\n".join(r.getMessage() for r in caplog.records)

    return text


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _assert_absent(haystack: str, secrets: dict[str, str]) -> None:
    for what, value in secrets.items():
        assert value not in haystack, f"{what} leaked"


def test_full_run_with_password_and_token_leaks_nothing(capsys, caplog, monkeypatch, all_logs, local_env,
                                                        htpasswd_registry, token_registry, token_server, unique_repo):
    with Pusher(htpasswd_registry, *ALICE) as p:
        pushed = push_index(p, unique_repo, "v1", layer_size=3000)
    caplog.clear()  # the seeding client (plain httpx, not the product) logged its own uploads
    local_env.write_auth({token_registry.host: BOB})  # the target's credentials: bob at the token server
    issued: list[str] = []
    issue = token_server.issue

    def recording_issue(*args, **kwargs):
        token = issue(*args, **kwargs)
        issued.append(token)
        return token

    monkeypatch.setattr(token_server, "issue", recording_issue)
    locations: list[str] = []
    location = UploadSessions.location

    def recording_location(self, r, what):
        url = location(self, r, what)
        locations.append(str(url))
        return url

    monkeypatch.setattr(UploadSessions, "location", recording_location)

    res = run_json(capsys, "--source", f"{htpasswd_registry.host}/{unique_repo}:v1", "--name", token_registry.host,
                   "--image", f"{unique_repo}:v1", "--username", ALICE[0], "--password", ALICE[1])
    out, err = capsys.readouterr()
    assert res["digest"] == pushed.digest and res["blobs"]["copied"] == len(pushed.blobs)
    logged = all_logs()
    # The capture really ran at DEBUG and saw the traffic (else finding nothing would prove nothing).
    assert "HTTP Request: PUT" in logged and "receive_response_headers" in logged
    assert issued and locations and all("_state=" in loc for loc in locations)

    secrets = {"source password": ALICE[1], "target password": BOB[1],
               "source Basic header": _basic(*ALICE), "target Basic header": _basic(*BOB)}
    for i, token in enumerate(issued):
        secrets[f"token {i}"] = token
        secrets[f"token {i} signature"] = token.rsplit(".", 1)[-1]
    for i, loc in enumerate(locations):
        secrets[f"upload state {i}"] = loc.split("_state=", 1)[1].split("&")[0][:24]
    _assert_absent(logged + out + err, secrets)
    assert "_state=" not in logged + out + err


@pytest.mark.parametrize("kind", ["htpasswd", "token"])
def test_failed_auth_never_echoes_the_password(capsys, all_logs, local_env, htpasswd_registry, token_registry,
                                               target_registry, unique_repo, kind):
    registry = htpasswd_registry if kind == "htpasswd" else token_registry
    wrong = f"Wrong-{kind}-Passw0rd-xyz"
    user = ALICE[0] if kind == "htpasswd" else BOB[0]
    with Pusher(registry, *(ALICE if kind == "htpasswd" else BOB)) as p:
        push_index(p, unique_repo, "v1")
    source = Reference.parse(f"{registry.host}/{unique_repo}:v1")
    request = ImportRequest(source=source, targets=resolve_targets(source, [], []),
                            target_registry=target_registry.host, credential=Credential(user, wrong))
    with pytest.raises(AuthError) as info:
        run_request(request, Settings.from_env())
    exc = info.value
    texts = [exc.message, str(exc), repr(exc), repr(exc.to_dict()), "".join(traceback.format_exception(exc))]
    assert "401" in exc.message
    rc, out, err = run_cli(capsys, "--source", str(source), "--name", target_registry.host, "-u", user, "-p", wrong)
    assert rc == 1 and "401" in error_line(err)
    _assert_absent("\n".join(texts) + all_logs() + out + err,
                   {"password": wrong, "Basic header": _basic(user, wrong)})


def test_registry_chosen_urls_are_redacted_in_logs_and_errors(capsys, monkeypatch, all_logs, local_env,
                                                               target_registry, unique_repo):
    """A redirect carrying a signature and userinfo, answered 403: neither reaches a log or the error."""
    with HostileServer() as source, HostileServer() as storage:
        monkeypatch.setenv("IMPORT_ALLOWED_PRIVATE_HOSTS", f"{source.host},{storage.host}")
        _, _, (_, layer) = source.image("team/app", "v1")
        signed = (f"http://cdnuser:CDN-PASSWORD@{storage.host}/blob?sig=SIG-SECRET&se=2030&"
                  "X-Amz-Credential=AMZ-SECRET&access_token=TOKEN-SECRET")
        source.on("GET", f"/v2/team/app/blobs/{layer['digest']}", Reply.redirect(signed))
        storage.on("GET", "/blob", Reply.error(403, "DENIED", "signature expired"))
        rc, out, err = run_cli(capsys, "--source", f"{source.host}/team/app:v1", "--name", target_registry.host,
                               "--image", f"{unique_repo}:v1")
        assert rc == 1 and "403" in error_line(err)
        assert storage.seen("GET", "/blob")  # the redirect was followed, and logged by httpx
        logged = all_logs()
        assert f"{storage.host}/blob" in logged
        _assert_absent(logged + out + err, {"sig": "SIG-SECRET", "amz": "AMZ-SECRET", "token": "TOKEN-SECRET",
                                            "userinfo password": "CDN-PASSWORD", "userinfo": "cdnuser"})



def test_credentials_are_never_sent_to_a_plain_http_realm():
    """An https registry's challenge naming an http realm gets no Basic credentials (they would
    cross the network in clear text); only operator-listed plain-http registries may do that."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "reg.example":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.example/token"'})
        return httpx.Response(200, json={"token": "t"})

    http = httpx.Client(transport=httpx.MockTransport(answer))
    client = RegistryClient("reg.example", http=http, policy=HostPolicy(), credential=Credential("u", "pw-in-clear"))
    with pytest.raises(AuthError) as info:
        client.manifest_head("r", "v1")
    assert "plain-http realm" in info.value.message
    assert [r.url.host for r in seen] == ["reg.example"]


def test_a_registry_echoing_the_credentials_does_not_get_them_into_the_error(capsys, local_env):
    """A hostile source quotes the password (and its Basic form) in its error message: the one-line
    error the user sees, and that the service stores as job status, shows *** instead."""
    from tests.support.hostile import BasicAuth

    password = "hunter2-echoed-secret"
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    with HostileServer() as srv:
        srv.auth = BasicAuth("alice", password)
        srv.on("GET", "/v2/r/manifests/v1", Reply.error(400, "MANIFEST_INVALID",
                                                         f"you said {password} and Basic {basic}"))
        # --platform skips the HEAD-only fast path: the GET's error body is what gets quoted
        rc, out, err = run_cli(capsys, "--source", f"{srv.host}/r:v1", "--name", "127.0.0.1:9",
                               "--username", "alice", "--password", password, "--platform", "linux/amd64")
    line = error_line(err)
    assert rc == 1 and "MANIFEST_INVALID" in line and "***" in line
    assert password not in out + err and basic not in out + err
