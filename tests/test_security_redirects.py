"""Redirects are followed by registry.py itself: credentials only to the registry's own origin
(scheme, host and port: another port on 127.0.0.1 is another origin), no https -> http, no
other schemes, at most 5 hops, and no cookies carried from one server to another.

Real runs use the CLI against a hostile source (tests/support/hostile.py) and a real target;
the https cases use an httpx.MockTransport (no TLS server needed, no network at all).
"""
from __future__ import annotations

import base64
import json

import httpx
import pytest

from importcore.auth import Credential
from importcore.values.errors import HostNotAllowed, RegistryError
from importcore.net.hostpolicy import HostPolicy
from importcore.registry.client import RegistryClient
from tests.support.hostile import BasicAuth, BearerAuth, HostileServer, Reply, guard_connections, sha256
from tests.support.images import Pusher
from tests.support.skopeo import skopeo_digest
from tests.test_cli_import import error_line, run_cli, run_json

PASSWORD = "redirect-test-Pa55"
TOKEN = "redirect-test-token-value"


def _blob_paths(source: HostileServer, repo: str, tag: str) -> list[str]:
    raw = source.routes[("GET", f"/v2/{repo}/manifests/{tag}")].body
    manifest = json.loads(raw)
    return [f"/v2/{repo}/blobs/{d['digest']}" for d in [manifest["config"], *manifest["layers"]]]


def _move(source: HostileServer, path: str, to: HostileServer, new_path: str, query: str = "") -> None:
    """Serve `path`'s answer at to/new_path instead, and redirect there."""
    to.on("GET", new_path, source.routes[("GET", path)])
    source.on("GET", path, Reply.redirect(f"{to.url}{new_path}{query}"))


@pytest.fixture
def servers(monkeypatch, local_env):
    """A source registry and a 'storage' server on another port, both allow-listed."""
    with HostileServer() as source, HostileServer() as storage:
        monkeypatch.setenv("IMPORT_ALLOWED_PRIVATE_HOSTS", f"{source.host},{storage.host}")
        yield source, storage


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_authorization_only_to_the_registrys_own_origin(capsys, monkeypatch, servers, target_registry, unique_repo,
                                                        scheme):
    source, storage = servers
    raw, digest, _ = source.image("team/app", "v1", layers=[b"first layer" * 50, b"second layer" * 50])
    config, cross, same = _blob_paths(source, "team/app", "v1")
    _move(source, cross, storage, "/cdn/layer", "?sig=abc")  # another port on 127.0.0.1: another origin
    _move(source, same, source, "/storage/layer")  # same origin, outside /v2/
    _move(source, config, source, "/storage/config-hop1")  # same origin, then off to the storage server
    _move(source, "/storage/config-hop1", storage, "/cdn/config")
    if scheme == "basic":
        source.auth = BasicAuth("alice", PASSWORD)
        expected = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    else:
        source.auth = BearerAuth(TOKEN, basic=BasicAuth("alice", PASSWORD))
        expected = f"Bearer {TOKEN}"
    connects = guard_connections(monkeypatch)
    res = run_json(capsys, "--source", f"{source.host}/team/app:v1", "--name", target_registry.host,
                   "--image", f"{unique_repo}:v1", "-u", "alice", "-p", PASSWORD)
    assert res["digest"] == digest
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == digest

    assert {s.path for s in storage.requests} == {"/cdn/layer", "/cdn/config"}
    assert all(s.authorization is None for s in storage.requests), [s.headers for s in storage.requests]
    same_origin = source.seen("GET", "/storage/")
    assert {s.path for s in same_origin} == {"/storage/layer", "/storage/config-hop1"}
    assert all(s.authorization == expected for s in same_origin)
    assert all(addr[0] == "127.0.0.1" for addr in connects)


def test_cookies_are_never_stored_or_sent(capsys, monkeypatch, servers, target_registry, unique_repo):
    """A Set-Cookie from one server must not come back, to it or to another port on the same host
    (cookie domains ignore ports): httpx keeps a jar per client unless told otherwise."""
    source, storage = servers
    raw, digest, _ = source.image("team/app", "v1")
    source.on("GET", "/v2/", Reply.json({}, **{"Set-Cookie": "session=COOKIE-SECRET; Path=/"}))
    head = source.routes[("GET", "/v2/team/app/manifests/v1")]
    head.headers["Set-Cookie"] = "lb=COOKIE-SECRET-2; Path=/"
    config, layer = _blob_paths(source, "team/app", "v1")
    _move(source, layer, storage, "/cdn/layer")
    run_json(capsys, "--source", f"{source.host}/team/app:v1", "--name", target_registry.host,
             "--image", f"{unique_repo}:v1")
    assert source.requests and storage.requests
    assert all("cookie" not in s.headers for s in source.requests + storage.requests)


@pytest.mark.parametrize("hops", [5, 6])
def test_redirect_hops_are_bounded(capsys, servers, target_registry, unique_repo, hops):
    source, _ = servers
    raw, digest, _ = source.image("team/app", "v1")
    _, layer = _blob_paths(source, "team/app", "v1")
    final = source.routes[("GET", layer)]
    source.on("GET", layer, Reply.redirect(f"{source.url}/hop/1"))
    for n in range(1, hops):
        source.on("GET", f"/hop/{n}", Reply.redirect(f"/hop/{n + 1}"))  # relative Locations too
    source.on("GET", f"/hop/{hops}", final)
    rc, out, err = run_cli(capsys, "--source", f"{source.host}/team/app:v1", "--name", target_registry.host,
                           "--image", f"{unique_repo}:v1", "--output", "json")
    if hops == 5:
        assert rc == 0, err
        assert json.loads(out)["digest"] == digest
        return
    assert rc == 1 and out == ""
    line = error_line(err)
    assert "more than 5 redirects" in line and layer.rsplit("/", 1)[-1] in line
    # The first request and five redirects followed; the sixth Location is never asked for.
    assert [s.path for s in source.seen("GET", "/hop/")] == [f"/hop/{n}" for n in range(1, 6)]
    assert source.seen("GET", layer) and not source.seen("GET", f"/hop/{hops}")
    with Pusher(target_registry) as t:
        assert t.tags(unique_repo) == []


# ---- https: decisions checked with a scripted transport ---------------------------------------------

DIGEST = sha256(b"blob")


class Script:
    """An httpx.MockTransport that records requests and answers by full URL (no network)."""

    def __init__(self, answers: dict[str, httpx.Response]):
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url.copy_with(query=None))
        ours = (request.url.host, request.url.port) == ("reg.example", None)
        if ours and request.headers.get("authorization") != "Basic " + base64.b64encode(b"u:pw").decode():
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="reg"'})
        return self.answers.get(url, httpx.Response(404))

    def client(self) -> RegistryClient:
        http = httpx.Client(transport=httpx.MockTransport(self), follow_redirects=False)
        return RegistryClient("reg.example", http=http, policy=HostPolicy(), credential=Credential("u", "pw"))


BLOB_URL = f"https://reg.example/v2/r/blobs/{DIGEST}"


@pytest.mark.parametrize("location", ["http://reg.example/storage/blob", "http://cdn.example/blob?sig=x",
                                      "ftp://cdn.example/blob", "file:///etc/passwd"])
def test_https_redirect_to_another_scheme_is_refused(location):
    script = Script({BLOB_URL: httpx.Response(307, headers={"Location": location})})
    with pytest.raises(HostNotAllowed) as info:
        with script.client().blob_get("r", DIGEST):
            pass
    assert "refusing a redirect from https to" in info.value.message
    assert "sig=x" not in info.value.message
    assert all(r.url.scheme == "https" and r.url.host == "reg.example" for r in script.requests)


@pytest.mark.parametrize("location", ["https://[::1", "https://reg.example:abc/b", "https://:99999/b?sig=x"])
def test_an_unusable_redirect_location_fails_once_with_a_clear_error(location):
    script = Script({BLOB_URL: httpx.Response(307, headers={"Location": location})})
    with pytest.raises(RegistryError) as info:
        with script.client().blob_get("r", DIGEST):
            pass
    assert not info.value.retryable
    assert "reg.example redirected to an unusable Location" in info.value.message
    assert "sig=x" not in info.value.message
    assert [r.url.host for r in script.requests] == ["reg.example", "reg.example"]  # the 401, then the 307


def test_https_cross_origin_redirect_drops_authorization_and_same_origin_keeps_it():
    script = Script({
        BLOB_URL: httpx.Response(307, headers={"Location": "/storage/blob"}),
        "https://reg.example/storage/blob": httpx.Response(302, headers={"Location": "https://reg.example:8443/b"}),
        "https://reg.example:8443/b": httpx.Response(307, headers={"Location": "https://cdn.example/b?sig=1"}),
        "https://cdn.example/b": httpx.Response(200, content=b"blob"),
    })
    with script.client().blob_get("r", DIGEST) as response:
        assert response.read() == b"blob"
    sent = {str(r.url.copy_with(query=None)): r.headers.get("authorization") for r in script.requests}
    assert sent[BLOB_URL] and sent["https://reg.example/storage/blob"] == sent[BLOB_URL]
    assert sent["https://reg.example:8443/b"] is None  # same host, other port: another origin
    assert sent["https://cdn.example/b"] is None


def test_redirects_are_not_followed_for_uploads():
    """A PUT/POST answered with a redirect is not re-sent anywhere (its body may be a blob)."""
    script = Script({"https://reg.example/v2/r/blobs/uploads/": httpx.Response(
        307, headers={"Location": "https://elsewhere.example/up"})})
    with pytest.raises(RegistryError) as info:
        script.client().uploads.start("r")
    assert info.value.status == 307
    assert all(r.url.host == "reg.example" for r in script.requests)
