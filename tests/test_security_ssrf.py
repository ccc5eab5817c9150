"""SSRF: a caller-chosen registry (and whatever it points us at) must not reach inside.

Every case runs against a recording server (tests/support/hostile.py) that would see the
request if the guard failed; `guard_connections` records every outgoing connect and refuses
any to a non-loopback address, so no test can send a packet off this machine.
tests/test_hostpolicy.py holds the blocked_reason / resolve tables; here the same forms go
through the real entry points: the CLI (importcore.cli.main) and the HTTP API's validation.
"""
from __future__ import annotations

import json
import socket

import pytest

from importcore.values.errors import HostNotAllowed
from importcore.net.hostpolicy import HostPolicy
from importcore.engine.runner import policy_for
from importcore.service.api import parse_import_body
from importcore.values.settings import Settings
from importcore.net.transport import make_http_client
from tests.support.hostile import BearerAuth, HostileServer, Reply, guard_connections
from tests.support.images import Pusher, push_image
from tests.test_cli_import import error_line, run_cli

# (id, registry as typed; {v4}/{v6} = the port of the recording server on 127.0.0.1 / ::1)
FORMS = [
    ("127.0.0.1", "127.0.0.1:{v4}"),
    ("localhost", "localhost:{v4}"),
    ("[::1]", "[::1]:{v6}"),
    ("decimal-2130706433", "2130706433:{v4}"),
    ("hex-0x7f.1", "0x7f.1:{v4}"),
    ("short-127.1", "127.1:{v4}"),
    ("octal-0177.0.0.1", "0177.0.0.1:{v4}"),
    # IPv4-mapped IPv6 in hex; the dotted form is not in the reference grammar (see below).
    ("[::ffff:7f00:1]", "[::ffff:7f00:1]:{v4}"),
    ("metadata-169.254.169.254", "169.254.169.254"),
    ("azure-wireserver-168.63.129.16", "168.63.129.16"),
    ("private-10.0.0.1", "10.0.0.1:{v4}"),
]


@pytest.fixture
def recorders():
    """Recording servers on 127.0.0.1 and ::1 (the forms above resolve to one of them)."""
    with HostileServer("127.0.0.1") as v4, HostileServer("::1") as v6:
        yield v4, v6


def _registry(form: str, recorders) -> str:
    v4, v6 = recorders
    return form.format(v4=v4.port, v6=v6.port)


# ---- direct: the source registry itself --------------------------------------------------------

@pytest.mark.parametrize("allow", ["unset", "target-only"])
@pytest.mark.parametrize(("name", "form"), FORMS, ids=[f[0] for f in FORMS])
def test_cli_refuses_inside_sources_without_contact(capsys, monkeypatch, local_env, target_registry, recorders,
                                                    name, form, allow):
    registry = _registry(form, recorders)
    # Plain http for the source too: were the guard to fail, the recorder would see a real request.
    monkeypatch.setenv("IMPORT_PLAIN_HTTP_REGISTRIES", f"127.0.0.1,{registry}")
    if allow == "unset":
        monkeypatch.delenv("IMPORT_ALLOWED_PRIVATE_HOSTS")
    else:
        monkeypatch.setenv("IMPORT_ALLOWED_PRIVATE_HOSTS", target_registry.host)
    connects = guard_connections(monkeypatch)
    rc, out, err = run_cli(capsys, "--source", f"{registry}/team/app:v1", "--name", target_registry.host)
    assert rc == 1 and out == ""
    line = error_line(err)
    assert f"source registry {registry} is not allowed" in line
    assert "IMPORT_ALLOWED_PRIVATE_HOSTS" in line
    assert connects == []  # refused before any connect: not even the target was contacted
    assert not any(r.contacted for r in recorders)


# Octal is left out: httpx refuses to build a URL with host 0177.0.0.1, so even allow-listed it
# can never be reached (the refusal above is what callers see).
LOOPBACK_FORMS = [f for f in FORMS if "{" in f[1] and not f[0].startswith(("private", "octal"))]


@pytest.mark.parametrize(("name", "form"), LOOPBACK_FORMS, ids=[f[0] for f in LOOPBACK_FORMS])
def test_control_the_same_forms_reach_the_recorder_when_allow_listed(capsys, monkeypatch, local_env, target_registry,
                                                                     recorders, name, form):
    """Positive control: each form above really leads to a recorder, so "not contacted" means refused."""
    registry = _registry(form, recorders)
    monkeypatch.setenv("IMPORT_PLAIN_HTTP_REGISTRIES", f"127.0.0.1,{registry}")
    monkeypatch.setenv("IMPORT_ALLOWED_PRIVATE_HOSTS", registry)
    guard_connections(monkeypatch)
    rc, _, err = run_cli(capsys, "--source", f"{registry}/team/app:v1", "--name", target_registry.host)
    assert rc == 1 and "404" in error_line(err)  # the recorder knows no such manifest
    assert any(r.seen("HEAD", "/v2/team/app/manifests/v1") for r in recorders)


def test_cli_dotted_ipv4_mapped_form_is_not_a_registry(capsys, monkeypatch, local_env, target_registry, recorders):
    monkeypatch.delenv("IMPORT_ALLOWED_PRIVATE_HOSTS")
    connects = guard_connections(monkeypatch)
    rc, out, err = run_cli(capsys, "--source", f"[::ffff:127.0.0.1]:{recorders[0].port}/team/app:v1",
                           "--name", target_registry.host)
    assert rc == 2 and "invalid registry" in error_line(err)
    assert connects == [] and not recorders[0].contacted


@pytest.mark.parametrize(("name", "form"), FORMS, ids=[f[0] for f in FORMS])
@pytest.mark.parametrize("field", ["source.registryUri", "source.sourceImage"])
def test_api_validation_refuses_inside_sources(monkeypatch, recorders, name, form, field):
    registry = _registry(form, recorders)
    settings = Settings.from_env({"IMPORT_TARGET_REGISTRY": "target.example.com",
                                  "IMPORT_ALLOWED_PRIVATE_HOSTS": "target.example.com"})
    if field == "source.registryUri":
        source = {"registryUri": registry, "sourceImage": "team/app:v1"}
    else:
        source = {"sourceImage": f"{registry}/team/app:v1"}
    body = json.dumps({"source": source, "targetTags": ["app:v1"]}).encode()
    connects = guard_connections(monkeypatch)
    with pytest.raises(HostNotAllowed) as info:
        parse_import_body(body, target_registry=settings.target_registry,
                          policy=policy_for(settings, settings.target_registry))
    assert info.value.target == field
    assert "IMPORT_ALLOWED_PRIVATE_HOSTS" in info.value.message
    assert connects == [] and not any(r.contacted for r in recorders)


# ---- indirect: a registry we may talk to points us somewhere we may not ---------------------------

@pytest.fixture
def hostile_source(monkeypatch, local_env):
    """An allow-listed hostile registry (exactly its host:port) serving team/app:v1, and a recorder
    on another loopback port that is NOT allow-listed. Plain http for all of 127.0.0.1."""
    with HostileServer() as source, HostileServer() as inside:
        source.image("team/app", "v1", layers=[b"layer-bytes-" * 100])
        monkeypatch.setenv("IMPORT_ALLOWED_PRIVATE_HOSTS", source.host)
        yield source, inside


def _inside_urls(inside: HostileServer) -> dict[str, str]:
    return {
        "other-port": f"http://127.0.0.1:{inside.port}/x?sig=SECRETSIG",
        "localhost-other-port": f"http://localhost:{inside.port}/x",
        "decimal-other-port": f"http://2130706433:{inside.port}/x",
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "wireserver": "http://168.63.129.16/machine?comp=goalstate",
    }


INSIDE = ["other-port", "localhost-other-port", "decimal-other-port", "metadata", "wireserver"]


def _assert_nothing_imported(target_registry, repo: str) -> None:
    with Pusher(target_registry) as t:
        assert t.tags(repo) == []


@pytest.mark.parametrize("where", INSIDE)
def test_token_realm_pointing_inside_is_refused_without_contact(capsys, monkeypatch, hostile_source,
                                                                target_registry, where):
    source, inside = hostile_source
    source.auth = BearerAuth(token="never-issued", realm=_inside_urls(inside)[where])
    connects = guard_connections(monkeypatch)
    rc, out, err = run_cli(capsys, "--source", f"{source.host}/team/app:v1", "--name", target_registry.host,
                           "--image", "ssrf/realm:v1", "--username", "u", "--password", "pw-for-the-realm")
    assert rc == 1 and out == ""
    line = error_line(err)
    assert "token service" in line and "not allowed" in line
    assert "pw-for-the-realm" not in err and "SECRETSIG" not in err
    assert not inside.contacted
    assert all(addr[0] == "127.0.0.1" and addr[1] in (source.port, target_registry.port) for addr in connects)
    assert source.seen("GET", "/v2/team/app/") or source.seen("HEAD", "/v2/team/app/")
    _assert_nothing_imported(target_registry, "ssrf/realm")


@pytest.mark.parametrize("where", INSIDE)
@pytest.mark.parametrize("what", ["blob", "manifest"])
def test_redirect_pointing_inside_is_refused_without_contact(capsys, monkeypatch, hostile_source, target_registry,
                                                             where, what):
    source, inside = hostile_source
    raw = next(reply for (m, p), reply in source.routes.items() if p == "/v2/team/app/manifests/v1").body
    layer = json.loads(raw)["layers"][0]["digest"]
    path = f"/v2/team/app/blobs/{layer}" if what == "blob" else "/v2/team/app/manifests/v1"
    source.on("GET", path, Reply.redirect(_inside_urls(inside)[where]))
    connects = guard_connections(monkeypatch)
    rc, out, err = run_cli(capsys, "--source", f"{source.host}/team/app:v1", "--name", target_registry.host,
                           "--image", f"ssrf/redirect-{what}:v1")
    assert rc == 1 and out == ""
    line = error_line(err)
    assert "redirected to" in line and "not allowed" in line
    assert "SECRETSIG" not in line and "sig=" not in line  # the refused URL is shown without its query
    assert not inside.contacted
    assert all(addr[0] == "127.0.0.1" and addr[1] in (source.port, target_registry.port) for addr in connects)
    assert source.seen(path_prefix=path)
    _assert_nothing_imported(target_registry, f"ssrf/redirect-{what}")


def test_upload_location_pointing_inside_is_refused_even_from_the_trusted_target(capsys, monkeypatch,
                                                                                 hostile_source):
    """The target is trusted as a host:port, not as a pointer: its Location is checked like any URL."""
    source, inside = hostile_source
    with HostileServer() as target:
        target.on("POST", "/v2/team/app/blobs/uploads/",
                  Reply(202, {"Location": f"http://127.0.0.1:{inside.port}/upload?_state=SECRETSTATE"}))
        connects = guard_connections(monkeypatch)
        rc, out, err = run_cli(capsys, "--source", f"{source.host}/team/app:v1", "--name", target.host)
        assert rc == 1 and out == ""
        line = error_line(err)
        assert "not allowed" in line and "SECRETSTATE" not in err
        assert not inside.contacted
        assert all(addr[1] in (source.port, target.port) for addr in connects)
        assert target.seen("POST") and not target.seen("PUT")  # nothing uploaded, nothing tagged


# ---- the transport itself: no proxies from the environment, no second DNS lookup ---------------------

def test_proxy_environment_variables_are_ignored(capsys, monkeypatch, local_env, source_registry, target_registry,
                                                 unique_repo):
    with Pusher(source_registry) as p:  # pushed before the proxy variables exist
        pushed = push_image(p, unique_repo, "v1")
    with HostileServer() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1",
                               "--name", target_registry.host, "--output", "json")
        assert rc == 0, err
        assert json.loads(out)["digest"] == pushed.digest
        assert not proxy.contacted


def test_connects_to_the_checked_address_and_checks_every_new_connection(monkeypatch):
    """DNS rebinding: the first answer is allowed (127.0.0.0/8 is listed), later ones point at
    10.0.0.1. The connection goes to the address that was checked, never to the name again,
    and the next connection's fresh answer is checked again and refused."""
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"] + ["10.0.0.1"] * 10)

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, port, *args, **kwargs)

    with HostileServer() as server:
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        connects = guard_connections(monkeypatch)
        policy = HostPolicy(plain_http=("rebind.test",), allowed_private=("127.0.0.0/8",))
        with make_http_client(policy) as http:
            r = http.get(f"http://rebind.test:{server.port}/v2/", headers={"Connection": "close"})
            assert r.status_code == 200
            with pytest.raises(HostNotAllowed) as info:
                http.get(f"http://rebind.test:{server.port}/v2/")
        assert "10.0.0.1" in info.value.message and "private" in info.value.message
        assert connects == [("127.0.0.1", server.port)]
        assert len(server.requests) == 1 and server.requests[0].headers["host"] == f"rebind.test:{server.port}"



def test_requests_name_the_release_in_their_user_agent():
    """The User-Agent carries importcore.__version__, not a number of its own."""
    import importcore

    with HostileServer() as server:
        policy = HostPolicy(plain_http=("127.0.0.1",), allowed_private=("127.0.0.1",))
        with make_http_client(policy) as http:
            assert http.get(f"{server.url}/v2/").status_code == 200
    assert server.requests[0].headers["user-agent"] == f"registry-importer/{importcore.__version__}"
