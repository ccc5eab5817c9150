"""The one retry layer: short in-process retries of transient faults, asked of the error.

Long waits (minutes) belong to the queue and the timer, not here (ggcr's note on retry
amplification: retry a unit once at one layer, never nested).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import stamina

from ..values.errors import ImporterError, RegistryError

__all__ = ["MAX_RETRY_AFTER", "attempts", "parse_retry_after"]

MAX_RETRY_AFTER = 30.0  # longer waits are the timer's job: the job is rescheduled instead
ATTEMPTS = 5
TOTAL_SECONDS = 120.0

_scope = threading.local()  # .depth: how many retried units this thread is inside


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Retry-After as seconds (RFC 9110 10.2.3: delay-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() is also true for '¹' and '٣'
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds())


def _hook(exc: Exception) -> bool | float:
    if not isinstance(exc, ImporterError) or not exc.retryable:
        return False
    if isinstance(exc, RegistryError) and exc.retry_after is not None:
        if exc.retry_after > MAX_RETRY_AFTER:
            return False  # too long to sit in a function invocation: surface it, the timer waits
        return exc.retry_after
    return True


class _Scoped:
    """One stamina attempt that marks this thread as inside a retried unit while it runs."""

    __slots__ = ("_attempt",)

    def __init__(self, attempt) -> None:
        self._attempt = attempt

    @property
    def num(self) -> int:
        return self._attempt.num

    def __enter__(self):
        _scope.depth = getattr(_scope, "depth", 0) + 1
        return self._attempt.__enter__()

    def __exit__(self, *exc) -> bool | None:
        _scope.depth -= 1
        return self._attempt.__exit__(*exc)


class _Once(contextlib.nullcontext):
    num = 1


def attempts(*, attempts: int = ATTEMPTS, timeout: float = TOTAL_SECONDS) -> Iterator:
    """`for attempt in attempts(): with attempt: ...` — exponential backoff with jitter.

    Inside an attempt of another `attempts()` loop on the same thread (a request made while a blob
    transfer is being tried) this yields one try only: the enclosing unit is what gets retried, so a
    503 storm costs `attempts` requests, not `attempts`² (what go-containerregistry calls "retry
    amplification").
    """
    if getattr(_scope, "depth", 0):
        return iter([_Once()])
    return (_Scoped(a) for a in stamina.retry_context(on=_hook, attempts=attempts, timeout=timeout,
                                                      wait_initial=0.2, wait_max=10.0, wait_jitter=0.5))
