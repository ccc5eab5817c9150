"""The one retry layer: short in-process retries of transient faults, asked of the error.

Long waits (minutes) belong to the queue and the timer, not here (ggcr's note on retry
amplification: retry a unit once at one layer, never nested).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import stamina

from .errors import ImporterError, RegistryError

__all__ = ["MAX_RETRY_AFTER", "attempts", "parse_retry_after"]

MAX_RETRY_AFTER = 30.0  # longer waits are the timer's job: the job is rescheduled instead
ATTEMPTS = 5
TOTAL_SECONDS = 120.0


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


def attempts(*, attempts: int = ATTEMPTS, timeout: float = TOTAL_SECONDS) -> Iterator:
    """`for attempt in attempts(): with attempt: ...` — exponential backoff with jitter."""
    return iter(stamina.retry_context(on=_hook, attempts=attempts, timeout=timeout,
                                      wait_initial=0.2, wait_max=10.0, wait_jitter=0.5))
