"""Timer-triggered functions: NCRONTAB (or TimeSpan) schedules evaluated in UTC, as the host does."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

from azure.functions.timer import TimerRequest  # the concrete class the Python worker builds
from croniter import croniter

from ..values.errors import ConfigError
from .config import timespan
from .functions import FunctionSpec, Invoker

log = logging.getLogger("importcore.devhost")

PAST_DUE_AFTER = timedelta(seconds=1)  # fired this late counts as past due


class Schedule:
    """An NCRONTAB expression ("sec min hour day month dow", or classic 5 fields) or a TimeSpan interval."""

    def __init__(self, expression: str) -> None:
        """Parse; ConfigError when the expression is neither form."""
        self.expression = expression.strip()
        self._interval: float | None = None
        fields = self.expression.split()
        if len(fields) == 1 and ":" in self.expression:
            self._interval = timespan(self.expression, what=f"timer schedule {expression!r}")
            if self._interval <= 0:
                raise ConfigError(f"timer schedule {expression!r}: the interval must be positive")
        elif len(fields) in (5, 6):
            # NCrontab matches day-of-month AND day-of-week when both are restricted (cron would OR them).
            self._cron_args = {"second_at_beginning": len(fields) == 6, "day_or": False}
            if not croniter.is_valid(self.expression, second_at_beginning=len(fields) == 6):
                raise ConfigError(f"timer schedule {expression!r} is not a valid NCRONTAB expression")
        else:
            raise ConfigError(f"timer schedule {expression!r}: expected 6 NCRONTAB fields or a TimeSpan")

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after moment (UTC)."""
        if self._interval is not None:
            return moment + timedelta(seconds=self._interval)
        return croniter(self.expression, moment, ret_type=datetime, **self._cron_args).get_next()


class TimerRunner:
    """Fires one timer function on its schedule in its own thread; runs never overlap."""

    def __init__(self, spec: FunctionSpec, invoker: Invoker) -> None:
        """Parse the (already %SETTING%-resolved) schedule."""
        self.spec, self._invoker = spec, invoker
        try:
            self.schedule = Schedule(str(spec.trigger["schedule"]))
        except ConfigError as exc:
            raise ConfigError(f"function '{spec.name}': {exc}") from None
        self.run_on_startup = bool(spec.trigger.get("runOnStartup", False))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"devhost-timer-{spec.name}", daemon=True)
        self._last: datetime | None = None

    def start(self) -> None:
        """Start the schedule thread (it fires first if runOnStartup)."""
        self._thread.start()

    def stop(self) -> None:
        """Fire no more (a running invocation finishes)."""
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Wait up to timeout for a running invocation; False if it is still running."""
        if self._thread.is_alive():
            self._thread.join(timeout=max(0.0, timeout))
        return not self._thread.is_alive()

    def fire(self, *, past_due: bool = False, reason: str = "Timer fired") -> None:
        """Invoke now with a TimerRequest; the user's exception propagates."""
        now = _utcnow()
        status = {"Last": (self._last or now).isoformat(), "Next": self.schedule.next_after(now).isoformat(),
                  "LastUpdated": now.isoformat()}
        self._last = now
        request = TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})
        self._invoker.invoke(self.spec, request, reason=reason)

    def _loop(self) -> None:
        if self.run_on_startup:
            self._safe_fire(False, "Timer fired at startup")
        due: datetime | None = None
        while not self._stop.is_set():
            # Never before the last occurrence: a wait that wakes a hair early must not fire it twice.
            due = self.schedule.next_after(max(_utcnow(), due) if due else _utcnow())
            if self._stop.wait(max(0.0, (due - _utcnow()).total_seconds())):
                return
            self._safe_fire(_utcnow() - due > PAST_DUE_AFTER, f"Timer fired at {due.isoformat()}")

    def _safe_fire(self, past_due: bool, reason: str) -> None:
        try:
            self.fire(past_due=past_due, reason=reason)
        except Exception:  # noqa: BLE001 - logged by the invoker; the schedule goes on, like the host
            pass


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)
