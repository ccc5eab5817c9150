"""The one retry layer: short in-process retries of transient faults, asked of the error.

Long waits (minutes) belong to the queue and the timer, not here (ggcr's note on retry
amplification: retry a unit once at one layer, never nested).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator

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
    from email.utils import parsedate_to_datetime  # rare: most registries send seconds

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


class _First:
    """A unit's first try, without stamina. Most requests succeed at once, and importing stamina
    (with tenacity) is a sixth of a CLI run's start-up; a retryable failure is kept here and handed
    to stamina, which decides and waits as if it had made the try itself."""

    num = 1

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.started = time.monotonic()

    def __enter__(self) -> _First:
        _scope.depth = getattr(_scope, "depth", 0) + 1
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        _scope.depth -= 1
        if isinstance(exc, Exception) and _hook(exc) is not False:
            self.error = exc
            return True
        return False


def _attempts(attempts: int, timeout: float) -> Iterator:
    first = _First()
    yield first
    if first.error is None:
        return
    import stamina

    left = max(timeout - (time.monotonic() - first.started), 0.001)
    retrying = stamina.retry_context(on=_hook, attempts=attempts, timeout=left, wait_initial=0.2, wait_max=10.0,
                                     wait_jitter=0.5)
    for n, attempt in enumerate(retrying):
        if n == 0:
            with attempt:  # stamina's first attempt is the one already made: its verdict, its wait
                raise first.error
            continue
        yield _Scoped(attempt)


def attempts(*, attempts: int = ATTEMPTS, timeout: float = TOTAL_SECONDS) -> Iterator:
    """`for attempt in attempts(): with attempt: ...` — exponential backoff with jitter (stamina).

    Inside an attempt of another `attempts()` loop on the same thread (a request made while a blob
    transfer is being tried) this yields one try only: the enclosing unit is what gets retried, so a
    503 storm costs `attempts` requests, not `attempts`² (what go-containerregistry calls "retry
    amplification").
    """
    if getattr(_scope, "depth", 0):
        return iter([_Once()])
    return _attempts(attempts, timeout)
