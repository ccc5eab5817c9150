"""DevHost: one FunctionApp's HTTP routes, queue listeners and timers, run in background threads."""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.functions.queue import QueueMessage

from ..values.errors import ImporterError
from .config import HostConfig
from .functions import FunctionSpec, Invoker, load_functions
from .queues import QueueListener, Queues
from .timers import TimerRunner
from .web import Router, make_server

log = logging.getLogger("importcore.devhost")
LOCAL_MARKER = "FUNCTIONS_CORETOOLS_ENVIRONMENT"


class DevHost:
    """A local Functions host for `app` (an azure.functions.FunctionApp), dispatching from app.get_functions().

    `env` holds app settings: they resolve %SETTING% binding expressions and, while the host runs,
    are exported to os.environ (restored on stop) because user code reads settings from the
    environment, as in Azure. DEVHOST_FUNCTION_KEY, when set, is required for non-anonymous routes
    and the admin API. Like Core Tools it sets FUNCTIONS_CORETOOLS_ENVIRONMENT=true (unless `env`
    says otherwise) and authenticates nobody: there is no App Service Authentication here.
    """

    def __init__(self, app: Any, *, host_json: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                 port: int = 0, bind: str = "127.0.0.1", queue_lease: float = 600.0, stop_timeout: float = 30.0) -> None:
        """Index the app's functions and validate bindings and host.json; nothing runs until start()."""
        # Like `func start`, which sets it for the worker: user code can tell it runs locally.
        self._env = {LOCAL_MARKER: "true", **dict(env or {})}
        settings = {**os.environ, **self._env}
        self.config = HostConfig.from_json(host_json)
        self.functions: dict[str, FunctionSpec] = {s.name: s for s in load_functions(app, settings, self.config)}
        self.function_key = settings.get("DEVHOST_FUNCTION_KEY") or None
        self.router = Router(self.functions.values(), self.config.route_prefix)
        self._queues = Queues(self.config.queues.message_encoding)
        self.invoker = Invoker(self._queues.send_output)
        self._listeners = [QueueListener(s, self.config.queues, self._queues, self.invoker, lease=queue_lease)
                           for s in self.functions.values() if s.kind == "queue"]
        self._timers = {s.name: TimerRunner(s, self.invoker) for s in self.functions.values() if s.kind == "timer"}
        self._bind, self._port, self._stop_timeout = bind, port, stop_timeout
        self._server: Any = None
        self._background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="devhost-admin")
        self._active = 0
        self._active_cv = threading.Condition()
        self._saved_env: dict[str, str | None] = {}

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:7071 (available after start())."""
        return f"http://{self.authority}"

    @property
    def authority(self) -> str:
        """host:port clients use to reach the server."""
        if self._server is None:
            raise RuntimeError("DevHost is not started")
        host = "127.0.0.1" if self._bind in ("", "0.0.0.0") else self._bind
        return f"{host}:{self._server.server_address[1]}"

    def start(self) -> DevHost:
        """Start the HTTP server, queue polling and timers; returns self."""
        for key, value in self._env.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        try:
            self.invoker.start()
            try:
                self._server = make_server(self, self._bind, self._port)
            except OSError as exc:
                raise ImporterError(f"cannot listen on {self._bind}:{self._port}: {exc.strerror or exc} "
                                    "(is another host running? choose another with --port)") from None
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                             name="devhost-http", daemon=True).start()
            for listener in self._listeners:
                listener.start()
            for timer in self._timers.values():
                timer.start()
        except BaseException:
            self.stop(timeout=0)  # what did start stops again; the environment is restored
            raise
        self._log_functions()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking work, wait (bounded) for in-flight invocations, then shut everything down."""
        deadline = time.monotonic() + (self._stop_timeout if timeout is None else timeout)
        for listener in self._listeners:
            listener.stop_polling()
        for timer in self._timers.values():
            timer.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        idle = all([listener.wait_idle(deadline - time.monotonic()) for listener in self._listeners])
        idle &= all([timer.join(deadline - time.monotonic()) for timer in self._timers.values()])
        with self._active_cv:
            idle &= self._active_cv.wait_for(lambda: self._active == 0, timeout=max(0.0, deadline - time.monotonic()))
        if not idle:
            log.warning("Stopping with invocations still running; their queue messages will reappear")
        for listener in self._listeners:
            listener.close()
        self._background.shutdown(wait=False, cancel_futures=True)
        self.invoker.stop()
        self._queues.close()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def function(self, name: str) -> FunctionSpec | None:
        """The function with this name (case-insensitive, like the host)."""
        return next((s for s in self.functions.values() if s.name.lower() == name.lower()), None)

    def run_timer(self, name: str) -> None:
        """Fire a timer function now, in this thread; its exception propagates."""
        spec = self.function(name)
        if spec is None or spec.kind != "timer":
            raise KeyError(f"no timer function named '{name}'")
        with self.tracked():
            self._timers[spec.name].fire(reason="This function was programmatically called via the host APIs.")

    def run_function(self, name: str, input: str | None = None) -> None:
        """Run a timer or queue function now, like the admin API (`input` is the queue message text)."""
        spec = self.function(name)
        if spec is None or spec.kind == "http":
            raise KeyError(f"no non-HTTP function named '{name}'")
        if spec.kind == "timer":
            return self.run_timer(spec.name)
        now = datetime.now(timezone.utc)
        message = QueueMessage(id=str(uuid.uuid4()), body=(input or "").encode("utf-8"), dequeue_count=1,
                                    insertion_time=now, time_next_visible=now,
                                    expiration_time=now + timedelta(days=7), pop_receipt=None)
        with self.tracked():
            self.invoker.invoke(spec, message, reason="This function was programmatically called via the host APIs.")

    def run_in_background(self, name: str, input: str | None = None) -> None:
        """run_function in a worker thread (the admin API answers 202 at once); failures are logged."""
        def run() -> None:
            try:
                self.run_function(name, input)
            except Exception:  # noqa: BLE001 - the invoker already logged the failure
                pass
        self._background.submit(run)

    @contextmanager
    def tracked(self) -> Iterator[None]:
        """Count an invocation as in flight, so stop() waits for it."""
        with self._active_cv:
            self._active += 1
        try:
            yield
        finally:
            with self._active_cv:
                self._active -= 1
                self._active_cv.notify_all()

    def _log_functions(self) -> None:
        lines = []
        for spec in self.functions.values():
            if spec.kind == "http":
                route = next(r for r in self.router.routes if r.spec is spec)
                methods = ",".join(sorted(route.methods)) if route.methods else "all"
                prefix = f"/{self.router.prefix}" if self.router.prefix else ""
                template = str(spec.trigger.get("route") or spec.name)
                lines.append(f"  {spec.name}: [{methods}] {self.url}{prefix}/{template}")
            elif spec.kind == "queue":
                lines.append(f"  {spec.name}: queueTrigger on '{spec.trigger['queueName']}'")
            else:
                lines.append(f"  {spec.name}: timerTrigger '{spec.trigger['schedule']}'")
        keys = ("the DEVHOST_FUNCTION_KEY on non-anonymous routes" if self.function_key
                else "no function keys either (set DEVHOST_FUNCTION_KEY)")
        log.info("Host started at %s (a local host: no App Service Authentication, anonymous routes are open; %s)"
                 "\nFunctions:\n%s", self.url, keys, "\n".join(lines))

    def __enter__(self) -> DevHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
