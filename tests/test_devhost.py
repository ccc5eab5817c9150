"""devhost against real Azurite, over real HTTP: routes, keys, queue semantics, timers."""
from __future__ import annotations

import base64
import socket
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from importcore.devhost import DevHost
from importcore.values.errors import ConfigError
from importcore.devhost.config import HostConfig
from importcore.devhost.functions import FunctionSpec
from importcore.devhost.queues import Queues
from importcore.devhost.timers import Schedule
from importcore.devhost.web import Router
from tests.support import sample_app
from tests.support.azurite import Azurite

FAST_QUEUES = {"maxPollingInterval": "00:00:00.200", "visibilityTimeout": "00:00:01", "maxDequeueCount": 2}
NEVER = "0 0 0 1 1 *"  # a valid schedule that does not fire during a test


@pytest.fixture(scope="module")
def azurite():
    server = Azurite()
    yield server
    server.stop()


@pytest.fixture
def make_host(azurite):
    """make_host(**settings, host_json=..., lease=...) -> started DevHost on a fresh queue."""
    hosts: list[DevHost] = []
    sample_app.reset()

    def make(host_json=None, lease=600.0, **settings) -> DevHost:
        env = {"AzureWebJobsStorage": azurite.connection_string, "SAMPLE_QUEUE": f"q{uuid.uuid4().hex[:12]}",
               "SAMPLE_SCHEDULE": NEVER, **settings}
        host = DevHost(sample_app.app, host_json=host_json or {"extensions": {"queues": FAST_QUEUES}},
                       env=env, queue_lease=lease, stop_timeout=5)
        host.queue = env["SAMPLE_QUEUE"]
        hosts.append(host.start())
        return host

    yield make
    for host in hosts:
        host.stop()


def queue(azurite, name, encoded=True) -> QueueClient:
    policy = TextBase64EncodePolicy() if encoded else None
    return QueueClient.from_connection_string(azurite.connection_string, name, message_encode_policy=policy)


def wait_until(predicate, timeout=8.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_route_params_and_async_function(make_host):
    host = make_host()
    r = httpx.get(f"{host.url}/api/items/a%20b")
    assert (r.status_code, r.json(), r.headers["content-type"]) == (200, {"id": "a b"}, "application/json")


def test_unknown_route_is_404_and_wrong_method_405(make_host):
    host = make_host()
    missing = httpx.get(f"{host.url}/api/nothing/here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    wrong = httpx.delete(f"{host.url}/api/items/1")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"


def test_route_prefix_from_host_json(make_host):
    host = make_host(host_json={"extensions": {"http": {"routePrefix": ""}}})
    assert httpx.get(f"{host.url}/items/7").json() == {"id": "7"}


def test_function_key_required_when_configured(make_host):
    host = make_host(DEVHOST_FUNCTION_KEY="k3y")
    url = f"{host.url}/api/items"
    assert httpx.post(url, content=b"x").status_code == 401
    assert httpx.post(url, content=b"x", headers={"x-functions-key": "wrong"}).status_code == 401
    assert httpx.post(url, content=b"x", headers={"x-functions-key": "k3y"}).status_code == 202
    assert httpx.post(url, content=b"y", params={"code": "k3y"}).status_code == 202
    assert httpx.get(f"{host.url}/api/items/1").status_code == 200  # anonymous route stays open
    assert httpx.post(f"{host.url}/admin/functions/tick", json={}).status_code == 401


def test_function_exception_is_generic_500(make_host, caplog):
    host = make_host()
    r = httpx.get(f"{host.url}/api/boom")
    assert r.status_code == 500 and "internal detail" not in r.text and "Traceback" not in r.text
    assert "internal detail" in caplog.text  # but the host log has it


def test_message_is_processed_and_deleted(make_host, azurite):
    host = make_host()
    assert httpx.post(f"{host.url}/api/items", content="héllo".encode()).status_code == 202
    wait_until(lambda: sample_app.processed == ["héllo"])
    wait_until(lambda: queue(azurite, host.queue).get_queue_properties().approximate_message_count == 0)


def test_failing_message_is_retried_then_poisoned(make_host, azurite):
    host = make_host()
    queue(azurite, host.queue).send_message("fail")
    poison = queue(azurite, f"{host.queue}-poison", encoded=False)
    wait_until(lambda: poison_messages(poison))
    assert [count for body, count in sample_app.attempts] == [1, 2]  # maxDequeueCount=2
    assert base64.b64decode(poison_messages(poison)[0].content) == b"fail"  # same text, still base64
    assert queue(azurite, host.queue).get_queue_properties().approximate_message_count == 0


def poison_messages(client: QueueClient):
    try:
        return client.peek_messages()
    except Exception:  # noqa: BLE001 - not created yet
        return []


def test_invalid_base64_goes_straight_to_poison(make_host, azurite):
    host = make_host()
    queue(azurite, host.queue, encoded=False).send_message("not base64!")
    wait_until(lambda: poison_messages(queue(azurite, f"{host.queue}-poison", encoded=False)))
    assert sample_app.attempts == []


def test_message_encoding_none_passes_raw_text(make_host, azurite):
    host = make_host(host_json={"extensions": {"queues": {**FAST_QUEUES, "messageEncoding": "none"}}})
    queue(azurite, host.queue, encoded=False).send_message("plain")
    wait_until(lambda: sample_app.processed == ["plain"])


def test_long_invocation_keeps_its_lease(make_host, azurite):
    host = make_host(lease=2)
    queue(azurite, host.queue).send_message("sleep:3")
    wait_until(lambda: sample_app.processed == ["sleep:3"])
    time.sleep(0.5)
    assert sample_app.attempts == [("sleep:3", 1)]  # renewed at half the lease, never redelivered


def test_stop_waits_for_in_flight_message(make_host, azurite):
    host = make_host()
    queue(azurite, host.queue).send_message("sleep:1")
    wait_until(lambda: sample_app.attempts)
    host.stop()
    assert sample_app.processed == ["sleep:1"]


def test_admin_api_runs_timer_and_queue_functions(make_host):
    host = make_host()
    assert httpx.post(f"{host.url}/admin/functions/tick", json={}).status_code == 202
    assert httpx.post(f"{host.url}/admin/functions/process_item", json={"input": "direct"}).status_code == 202
    wait_until(lambda: sample_app.timer_runs == [False] and sample_app.processed == ["direct"])
    host.run_timer("tick")
    assert len(sample_app.timer_runs) == 2
    assert httpx.post(f"{host.url}/admin/functions/get_item", json={}).status_code == 404


def test_timer_fires_on_its_schedule(make_host):
    make_host(SAMPLE_SCHEDULE="*/1 * * * * *")
    wait_until(lambda: len(sample_app.timer_runs) >= 2, timeout=4)


def test_bindings_need_their_settings(monkeypatch):
    monkeypatch.delenv("SAMPLE_QUEUE", raising=False)
    with pytest.raises(ConfigError, match="SAMPLE_QUEUE"):
        DevHost(sample_app.app, env={"AzureWebJobsStorage": "UseDevelopmentStorage=true", "SAMPLE_SCHEDULE": NEVER})


def test_development_storage_shortcut():
    client = Queues("base64").client("UseDevelopmentStorage=true", "jobs")
    assert client.url == "http://127.0.0.1:10001/devstoreaccount1/jobs"


def test_host_json_and_schedule_parsing():
    config = HostConfig.from_json({"extensions": {"queues": {"batchSize": 4, "maxPollingInterval": 2000}}})
    assert (config.route_prefix, config.queues.new_batch_threshold, config.queues.max_polling_interval) == ("api", 2, 2.0)
    with pytest.raises(ConfigError):
        HostConfig.from_json({"extensions": {"queues": {"batchSize": 64}}})
    with pytest.raises(ConfigError):
        Schedule("every minute")
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert Schedule("00:00:05").next_after(start) == start + timedelta(seconds=5)
    assert Schedule("*/15 * * * * *").next_after(start) == start + timedelta(seconds=15)
    assert Schedule("0 0 0 13 * FRI").next_after(start).date() == date(2026, 2, 13)  # NCRONTAB ANDs the day fields


def test_route_templates_prefer_literals():
    def spec(name, route, methods=None):
        trigger = {"route": route, "methods": methods, "authLevel": "ANONYMOUS"}
        return FunctionSpec(name=name, func=print, kind="http", arg_name="req", trigger=trigger)

    router = Router([spec("any", "files/{*path}"), spec("one", "files/{id:int}"), spec("stats", "files/stats"),
                     spec("opt", "tags/{tag?}", ["GET"])], "api")

    def found(path):
        route, params, _ = router.find(path, "GET")
        return route and (route.spec.name, params)

    assert found("/api/files/stats") == ("stats", {})
    assert found("/api/FILES/42/") == ("one", {"id": "42"})
    assert found("/api/files/a/b%20c") == ("any", {"path": "a/b c"})
    assert found("/api/tags") == ("opt", {}) and found("/api/tags/x") == ("opt", {"tag": "x"})
    assert router.find("/api/tags", "POST")[2] == {"GET"} and found("/other/files/1") is None


def test_a_burst_of_new_connections_is_served_not_reset(make_host):
    """Clients that connect at the same moment wait in the listen backlog; none is reset."""
    host = make_host()
    clients, rounds = 48, 2
    start = threading.Barrier(clients)
    answers: list[object] = []

    def submit(n: int) -> None:
        start.wait(timeout=30)
        for i in range(rounds):
            try:  # a new connection per request, as from many independent clients
                with httpx.Client(timeout=60) as client:
                    answers.append(client.post(f"{host.url}/api/items", content=f"{n}-{i}".encode()).status_code)
            except httpx.TransportError as exc:
                answers.append(repr(exc))

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert answers == [202] * (clients * rounds)


def _raw_exchange(host: DevHost, request: bytes) -> list[bytes]:
    """Send raw bytes on one connection and read until the server closes it (or 5 s of silence)."""
    with socket.create_connection(("127.0.0.1", int(host.url.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            received += b"<still open>"
    return [line for line in received.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")] + (
        [b"<still open>"] if received.endswith(b"<still open>") else [])


SMUGGLED = b"GET /api/items/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("framing", [
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",  # a chunk size that is not hex
    b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcdXY",  # no CRLF after the chunk's data
    b"Content-Length: ten\r\n\r\n",
    b"Content-Length: -5\r\n\r\n",
    b"Content-Length: 3\r\nContent-Length: 40\r\n\r\n",  # two different lengths
], ids=["chunk-size", "chunk-end", "length-not-a-number", "length-negative", "length-twice"])
def test_a_body_that_cannot_be_framed_closes_the_connection(make_host, framing):
    """400, then the connection is closed: what follows is never parsed as another request."""
    host = make_host()
    statuses = _raw_exchange(host, b"POST /api/items HTTP/1.1\r\nHost: x\r\n" + framing + SMUGGLED)
    assert statuses == [b"HTTP/1.1 400 Bad Request"]
    assert sample_app.attempts == [] and sample_app.processed == []


def test_well_framed_bodies_keep_the_connection(make_host):
    host = make_host()
    chunked = (b"POST /api/items HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n")
    sized = b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nfg"
    last = b"GET /api/items/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    statuses = _raw_exchange(host, chunked + sized + last)  # three requests on one connection
    assert statuses == [b"HTTP/1.1 202 Accepted", b"HTTP/1.1 202 Accepted", b"HTTP/1.1 200 OK"]
    wait_until(lambda: sorted(sample_app.processed) == ["abcde", "fg"])
