"""Shared fixtures: real registries on free loopback ports, a token server, and a local env.

Session-scoped registries are shared by many tests, so each test writes to its own
``unique_repo`` and never assumes a registry is empty.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

# Bare `pytest` (unlike `python -m pytest`) does not put the repo root on sys.path.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.registries import RegistryServer  # noqa: E402
from tests.support.tokenserver import TokenServer  # noqa: E402

ALICE = ("alice", "s3cret-alice")  # htpasswd_registry's user
BOB = ("bob", "s3cret-bob")  # token_server's user


@pytest.fixture(scope="session")
def source_registry(tmp_path_factory):
    """Anonymous registry to seed content into."""
    with RegistryServer(tmp_path_factory.mktemp("source-registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def target_registry(tmp_path_factory):
    """Anonymous registry to import into."""
    with RegistryServer(tmp_path_factory.mktemp("target-registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory):
    """Basic-auth registry; users {"alice": "s3cret-alice"}; anonymous requests get 401."""
    with RegistryServer(tmp_path_factory.mktemp("htpasswd-registry"), "htpasswd", users=dict([ALICE])) as reg:
        yield reg


@pytest.fixture(scope="session")
def token_server(tmp_path_factory):
    """Token server with users {"bob": "s3cret-bob"}: anonymous may pull, bob pull+push.
    Shared: change access only with ``token_server.grant(user, unique_repo, ...)``."""
    with TokenServer(tmp_path_factory.mktemp("token-server"), dict([BOB])) as ts:
        yield ts


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory, token_server):
    """Bearer-token registry trusting ``token_server``."""
    with RegistryServer(tmp_path_factory.mktemp("token-registry"), "token", token_server=token_server) as reg:
        yield reg


@pytest.fixture
def registry_factory(tmp_path):
    """``registry_factory(auth_mode="none", *, users=None, token_server=None, notifications=None,
    extra_config=None) -> RegistryServer`` (started). auth_mode="token" without token_server makes
    a private TokenServer (users default {"bob": ...}), reachable as ``reg.token_server``.
    Everything started is stopped at teardown."""
    started: list = []

    def make(auth_mode: str = "none", **kw) -> RegistryServer:
        n = len(started)
        if auth_mode == "token" and kw.get("token_server") is None:
            ts = TokenServer(tmp_path / f"ts{n}", kw.pop("users", None) or dict([BOB])).start()
            started.append(ts)
            kw["token_server"] = ts
        reg = RegistryServer(tmp_path / f"registry{n}", auth_mode, **kw)
        started.append(reg)  # before start(): a failed start is still cleaned up
        return reg.start()

    yield make
    for s in reversed(started):
        s.stop()


@pytest.fixture
def unique_repo(request) -> str:
    """A fresh repository name per test: 't/<test-name-slug>-<6 hex>' (valid Distribution name)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-") or "test"
    return f"t/{slug}-{secrets.token_hex(3)}"


@pytest.fixture
def local_env(monkeypatch, tmp_path):
    """Environment the product reads, pointed at loopback registries and a private HOME.

    Sets IMPORT_PLAIN_HTTP_REGISTRIES and IMPORT_ALLOWED_PRIVATE_HOSTS to "127.0.0.1" (a bare host
    matches every port), REGISTRY_AUTH_FILE to an empty '{}' file, HOME to a tmp dir; removes
    DOCKER_CONFIG. Returns a namespace: .auth_file, .home, and
    .write_auth({host: (user, password)}) to put docker config.json credentials in the auth file.
    """
    home = tmp_path / "home"
    home.mkdir()
    auth_file = tmp_path / "auth.json"
    auth_file.write_text("{}")
    monkeypatch.setenv("IMPORT_PLAIN_HTTP_REGISTRIES", "127.0.0.1")
    monkeypatch.setenv("IMPORT_ALLOWED_PRIVATE_HOSTS", "127.0.0.1")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)

    def write_auth(entries: dict[str, tuple[str, str]]) -> Path:
        auths = {host: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for host, (u, p) in entries.items()}
        auth_file.write_text(json.dumps({"auths": auths}))
        return auth_file

    return SimpleNamespace(auth_file=auth_file, home=home, write_auth=write_auth)
