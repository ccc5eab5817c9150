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


# --- The function app on a local Functions host (devhost) against Azurite --------------------------------
# Self-contained: everything below is used by test_app_e2e.py, test_worker.py and test_secrets_at_rest.py.

APP_QUEUE_OPTIONS = {
    "batchSize": 4, "newBatchThreshold": 2, "maxPollingInterval": "00:00:00.200",
    # Small, so a message whose invocation failed comes back at once (the poison test needs 5 deliveries).
    "visibilityTimeout": "00:00:00", "maxDequeueCount": 5, "messageEncoding": "base64",
}
NEVER_SCHEDULE = "0 0 0 1 1 *"  # valid, but not due during a test: tests fire the timer with run_timer


@pytest.fixture(scope="session")
def azurite():
    """One Azurite for the session; tests isolate themselves with their own queue and table names."""
    from tests.support.azurite import Azurite

    server = Azurite()
    yield server
    server.stop()


class AppHost:
    """A started DevHost on function_app.app plus the clients tests use to look behind it."""

    def __init__(self, host, env: dict, connection_string: str) -> None:
        import httpx

        self.host, self.env, self.connection_string = host, env, connection_string
        self.url, self.queue_name, self.table_name = host.url, env["IMPORT_QUEUE"], env["IMPORT_JOBS_TABLE"]
        self.http = httpx.Client(base_url=host.url, timeout=30.0)

    def service(self):
        import function_app

        return function_app.service()

    def post_import(self, body, **kw):
        if isinstance(body, (bytes, str)):
            return self.http.post("/api/imports", content=body, **kw)
        return self.http.post("/api/imports", json=body, **kw)

    def status(self, job_id: str) -> dict:
        r = self.http.get(f"/api/imports/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_for(self, job_id: str, predicate=lambda j: j["status"] in ("Succeeded", "Failed"),
                 timeout: float = 30.0) -> dict:
        import time

        deadline = time.monotonic() + timeout
        while True:
            job = self.status(job_id)
            if predicate(job):
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']}: {job}"
            time.sleep(0.05)

    def queue_client(self, name: str | None = None, *, decoded: bool = False):
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy

        return QueueClient.from_connection_string(
            self.connection_string, name or self.queue_name,
            message_decode_policy=TextBase64DecodePolicy() if decoded else None)

    def peek(self, name: str | None = None) -> list[str]:
        """Raw text of up to 32 visible messages (as stored, i.e. base64)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return [m.content for m in self.queue_client(name).peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []

    def table_client(self):
        from azure.data.tables import TableClient

        return TableClient.from_connection_string(self.connection_string, table_name=self.table_name)

    def entities(self) -> list[dict]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return list(self.table_client().list_entities())
        except ResourceNotFoundError:
            return []


@pytest.fixture
def app_host_factory(azurite, target_registry, tmp_path):
    """``app_host_factory(host_json=None, **env) -> AppHost``: function_app.app on a started DevHost.

    Each host gets its own queue and table, a fresh IMPORT_CREDENTIAL_KEY, target_registry as the
    target, 127.0.0.1 as plain-http and allowed-private, an empty auth file, and timers (sweep and sync)
    that never fire by themselves. ``env`` overrides or adds settings (e.g. ``**{"AzureWebJobs.run_import.Disabled": "true"}``
    to keep messages in the queue). Only one host runs at a time: the app reads os.environ.
    """
    import uuid

    from cryptography.fernet import Fernet

    from importcore.devhost import DevHost
    from tests.support.functionapp import index_function_app

    # An empty docker config via DOCKER_CONFIG, not REGISTRY_AUTH_FILE: the host exports its env to
    # os.environ, and docker-registry reads REGISTRY_* variables as config overrides (auth.file).
    docker_config = tmp_path / "app-docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text("{}")
    hosts: list = []

    def make(host_json: dict | None = None, **overrides: str) -> AppHost:
        suffix = uuid.uuid4().hex[:12]
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "IMPORT_QUEUE": f"imports-{suffix}",
            "IMPORT_JOBS_TABLE": f"jobs{suffix}",
            "IMPORT_TARGET_REGISTRY": target_registry.host,
            "IMPORT_PLAIN_HTTP_REGISTRIES": "127.0.0.1",
            "IMPORT_ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
            "IMPORT_CREDENTIAL_KEY": Fernet.generate_key().decode(),
            "IMPORT_TIMER_SCHEDULE": NEVER_SCHEDULE,
            "IMPORT_SYNC_TIMER_SCHEDULE": NEVER_SCHEDULE,
            "DOCKER_CONFIG": str(docker_config),
            **overrides,
        }
        # Indexed with this host's settings, as the worker does: the bindings name this host's queue.
        function_app = index_function_app(env)
        function_app.service.cache_clear()  # the service is built from os.environ on first use
        host = DevHost(function_app.app, host_json=host_json or {"extensions": {"queues": APP_QUEUE_OPTIONS}},
                       env=env, stop_timeout=10)
        host.start()
        app = AppHost(host, env, azurite.connection_string)
        hosts.append(app)
        app.service()  # built now, with the host's settings exported, before any invocation races for it
        return app

    yield make
    for app in reversed(hosts):
        app.http.close()
        app.host.stop()
    if "function_app" in sys.modules:
        sys.modules["function_app"].service.cache_clear()


@pytest.fixture
def app_host(app_host_factory):
    """function_app.app on a started DevHost with the default test settings (see app_host_factory)."""
    return app_host_factory()


@pytest.fixture
def pushers(source_registry, target_registry):
    """Pushers to the source and the target registry, for tests that build what they import."""
    from tests.support.images import Pusher

    with Pusher(source_registry) as src, Pusher(target_registry) as tgt:
        yield src, tgt


@pytest.fixture
def key():
    """A fresh cosign-style key pair (tests/support/cosign.py)."""
    from tests.support.cosign import Key

    return Key.generate()
