"""Spans, counters and job-stamped logs: Azure Monitor when APPLICATIONINSIGHTS_CONNECTION_STRING
is set (azure-monitor-opentelemetry, imported only then), nothing otherwise.

    configure(connection_string)                   once, when the app builds its service (function_app.py)
    with span("import", job_id=..., source=...):   a span; a no-op context without telemetry
    count("import.bytes", n, outcome="copied")     a monotonic counter; a no-op without telemetry
    with job_scope(job_id): ...                    log records inside carry record.job_id
    install_job_filter()                           stamp job_id on every record of the root handlers
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["CONNECTION_STRING", "JobIdFilter", "JobLogAdapter", "configure", "count", "current_job",
           "enabled", "install_job_filter", "job_logger", "job_scope", "span"]

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
_NAME = "importcore"
log = logging.getLogger("importcore.telemetry")

_lock = threading.Lock()
_tracer: Any = None
_meter: Any = None
_counters: dict[str, Any] = {}
_configured = False
_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("importcore_job_id", default=None)


def configure(connection_string: str | None) -> bool:
    """Turn Azure Monitor on if there is a connection string (Settings'
    APPLICATIONINSIGHTS_CONNECTION_STRING); once per process; True when on."""
    global _tracer, _meter, _configured
    with _lock:
        if _configured:
            return _tracer is not None
        _configured = True
        connection = (connection_string or "").strip()
        if not connection:
            return False
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor
            from opentelemetry import metrics, trace
        except ImportError:
            log.warning("%s is set but azure-monitor-opentelemetry is not installed: telemetry is off",
                        CONNECTION_STRING)
            return False
        configure_azure_monitor(
            connection_string=connection,
            # The Functions host already ships the worker's log lines to Application Insights;
            # exporting them here too would count every line twice.
            disable_logging=True,
            # No per-request spans (and no traceparent header) for third-party registries: our own
            # spans per import and per blob say what matters.
            instrumentation_options={"httpx": {"enabled": False}, "requests": {"enabled": False},
                                     "urllib": {"enabled": False}, "urllib3": {"enabled": False}},
        )
        _tracer = trace.get_tracer(_NAME)
        _meter = metrics.get_meter(_NAME)
        return True


def enabled() -> bool:
    return _tracer is not None


def _attributes(attrs: Mapping[str, object]) -> dict[str, object]:
    """OpenTelemetry takes str/bool/int/float (or sequences of them); None is dropped."""
    out: dict[str, object] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, (str, bool, int, float)) else str(value)
    return out


@contextmanager
def span(name: str, **attrs: object) -> Iterator[Any]:
    """A span named `name` (the current job id added); yields the span, or None when off.
    An exception leaving the block is recorded on the span and re-raised."""
    if _tracer is None:
        yield None
        return
    job = _job.get()
    if job and "job_id" not in attrs:
        attrs["job_id"] = job
    with _tracer.start_as_current_span(name, attributes=_attributes(attrs)) as current:
        yield current


def count(name: str, value: int | float = 1, **attrs: object) -> None:
    """Add `value` to the counter `name` (created on first use)."""
    if _meter is None:
        return
    counter = _counters.get(name)
    if counter is None:
        with _lock:
            counter = _counters.get(name) or _meter.create_counter(name)
            _counters[name] = counter
    counter.add(value, attributes=_attributes(attrs))


# -- job ids on log records -------------------------------------------------------------------

def current_job() -> str | None:
    return _job.get()


@contextmanager
def job_scope(job_id: str | None) -> Iterator[None]:
    """Within the block (and in threads started with contextvars.copy_context()), records carry job_id."""
    token = _job.set(job_id)
    try:
        yield
    finally:
        _job.reset(token)


class JobIdFilter(logging.Filter):
    """Sets record.job_id (the current job, or "-") so a formatter may use %(job_id)s.

    prefix=True also starts the message with "job <id>: " where it does not name the job
    already: the Functions host forwards the message text only, so that is where the id must be.
    """

    def __init__(self, *, prefix: bool = False) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        job = getattr(record, "job_id", None)
        job = (job if job and job != "-" else None) or _job.get()  # "-": an earlier handler found none
        record.job_id = job or "-"
        if self.prefix and job and not getattr(record, "_job_prefixed", False):
            if f"job {job}" not in str(record.msg):
                record.msg = f"job {job}: {record.msg}"
            record._job_prefixed = True  # a record passes every handler's filter: prefix once
        return True


def install_job_filter(logger: logging.Logger | None = None, *, prefix: bool = True) -> JobIdFilter:
    """Add a JobIdFilter to every handler of `logger` (the root logger by default) and return it.

    Handler filters, not logger filters: a logger's filters do not see records propagated
    from child loggers (logging docs, "Filter Objects").
    """
    logger = logger or logging.getLogger()
    job_filter = JobIdFilter(prefix=prefix)
    for handler in logger.handlers:
        if not any(isinstance(f, JobIdFilter) for f in handler.filters):
            handler.addFilter(job_filter)
    return job_filter


class JobLogAdapter(logging.LoggerAdapter):
    """A logger for one job: every record carries extra job_id, whatever thread logs it."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def job_logger(logger: logging.Logger | str, job_id: str) -> JobLogAdapter:
    logger = logging.getLogger(logger) if isinstance(logger, str) else logger
    return JobLogAdapter(logger, {"job_id": job_id})
