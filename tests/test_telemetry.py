"""telemetry.py: nothing without APPLICATIONINSIGHTS_CONNECTION_STRING; spans and counters through
OpenTelemetry with it (scripted stand-ins for azure-monitor-opentelemetry and opentelemetry, which
the test machine need not have); the job id on every log record."""
from __future__ import annotations

import importlib
import logging
import sys
import threading
import types
from contextlib import contextmanager

import pytest

import importcore.observe.telemetry as telemetry_module
from importcore.values.settings import Settings


@pytest.fixture
def telemetry():
    """A fresh module state per test (configure() is once per process by design)."""
    module = importlib.reload(telemetry_module)
    yield module
    importlib.reload(telemetry_module)


def test_everything_is_a_no_op_without_a_connection_string(telemetry):
    assert telemetry.configure(None) is False and not telemetry.enabled()
    with telemetry.span("import", job_id="j", source="docker.io/library/x") as s:
        assert s is None
    telemetry.count("import.bytes", 10, outcome="copied")
    assert telemetry.configure("InstrumentationKey=x") is False  # once


def test_missing_package_warns_and_stays_off(telemetry, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", None)  # import fails
    with caplog.at_level(logging.WARNING, logger="importcore.observe.telemetry"):
        assert telemetry.configure("InstrumentationKey=x") is False
    assert "azure-monitor-opentelemetry is not installed" in caplog.text
    with telemetry.span("import") as s:
        assert s is None


class _Recorder:
    def __init__(self):
        self.configured: list[dict] = []
        self.spans: list[tuple[str, dict]] = []
        self.counts: list[tuple[str, float, dict]] = []


@pytest.fixture
def otel(monkeypatch):
    rec = _Recorder()
    monitor = types.ModuleType("azure.monitor.opentelemetry")
    monitor.configure_azure_monitor = lambda **kw: rec.configured.append(kw)

    class Tracer:
        @contextmanager
        def start_as_current_span(self, name, attributes=None):
            attrs = dict(attributes or {})
            rec.spans.append((name, attrs))
            yield types.SimpleNamespace(name=f"span:{name}", set_attribute=attrs.__setitem__)

    class Counter:
        def __init__(self, name):
            self.name = name

        def add(self, value, attributes=None):
            rec.counts.append((self.name, value, dict(attributes or {})))

    class Meter:
        def create_counter(self, name):
            return Counter(name)

    otel_pkg = types.ModuleType("opentelemetry")
    otel_pkg.trace = types.SimpleNamespace(get_tracer=lambda name: Tracer())
    otel_pkg.metrics = types.SimpleNamespace(get_meter=lambda name: Meter())
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", monitor)
    monkeypatch.setitem(sys.modules, "opentelemetry", otel_pkg)
    return rec


def test_spans_and_counters_with_a_connection_string(telemetry, otel):
    settings = Settings.from_env({"APPLICATIONINSIGHTS_CONNECTION_STRING": " InstrumentationKey=abc "})
    assert telemetry.configure(settings.applicationinsights_connection_string) is True
    assert otel.configured[0]["connection_string"] == "InstrumentationKey=abc"
    assert otel.configured[0]["disable_logging"] is True
    assert otel.configured[0]["instrumentation_options"]["httpx"] == {"enabled": False}
    with telemetry.job_scope("job-1"):
        with telemetry.span("import", source="docker.io/library/x", platform=None, blobs=3, force=False) as s:
            assert s.name == "span:import"
        with pytest.raises(ValueError):
            with telemetry.span("blob", digest="sha256:ab", size=1.5, ref=object()):
                raise ValueError("boom")
    telemetry.count("import.bytes", 1024, outcome="copied", registry="r")
    telemetry.count("import.bytes", 1, outcome="copied")
    assert otel.spans[0] == ("import", {"source": "docker.io/library/x", "blobs": 3, "force": False,
                                        "job_id": "job-1"})
    assert otel.spans[1][0] == "blob" and isinstance(otel.spans[1][1]["ref"], str)
    assert otel.counts == [("import.bytes", 1024, {"outcome": "copied", "registry": "r"}),
                           ("import.bytes", 1, {"outcome": "copied"})]


def _capture(logger_name: str, handlers: int = 1):
    logger = logging.getLogger(logger_name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    records: list[logging.LogRecord] = []
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)
            messages.append(f"[{record.job_id}] {record.getMessage()}")

    for _ in range(handlers):
        logger.addHandler(Keep())
    return logger, records, messages


def test_job_id_is_stamped_on_every_record(telemetry):
    logger, records, messages = _capture("test.telemetry.jobs", handlers=2)
    telemetry.install_job_filter(logger)
    telemetry.install_job_filter(logger)  # idempotent per handler
    assert all(len(h.filters) == 1 for h in logger.handlers)
    logger.info("outside %s", "any job")
    with telemetry.job_scope("4f1c"):
        logger.info("copying %d blobs", 3)
        logger.info("job 4f1c: already says which")
    adapter = telemetry.job_logger(logger, "77aa")
    done = threading.Event()
    threading.Thread(target=lambda: (adapter.warning("from a worker thread"), done.set())).start()
    assert done.wait(5)
    assert messages[::2] == ["[-] outside any job", "[4f1c] job 4f1c: copying 3 blobs",
                             "[4f1c] job 4f1c: already says which", "[77aa] job 77aa: from a worker thread"]
    assert messages[1::2] == messages[::2]  # the second handler saw the same, prefixed once
    assert telemetry.current_job() is None


def test_an_import_makes_one_span_per_blob_carrying_the_job_id(telemetry, otel, capsys, local_env, source_registry,
                                                                target_registry, unique_repo):
    """The blob spans are made in the copy's thread pool: the job id must follow the work there."""
    from importcore.cli import main
    from tests.support.images import Pusher, push_index

    assert telemetry.configure("InstrumentationKey=x") is True
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1")
    with telemetry.job_scope("job-42"):
        assert main(["import", "--source", f"{source_registry.host}/{unique_repo}:v1", "--name",
                     target_registry.host, "--output", "json"]) == 0
    blobs = [attrs for name, attrs in otel.spans if name == "blob"]
    assert sorted(a["digest"] for a in blobs) == sorted(d for d, _ in pushed.blobs)
    assert {a["job_id"] for a in blobs} == {"job-42"} and {a["outcome"] for a in blobs} == {"copied"}
