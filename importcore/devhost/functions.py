"""Read a FunctionApp's registered functions and invoke them like the Python worker does."""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..values.errors import ConfigError
from .config import HostConfig, resolve, storage_connection

log = logging.getLogger("importcore.devhost")

TRIGGERS = {"httpTrigger": "http", "queueTrigger": "queue", "timerTrigger": "timer"}


@dataclass(frozen=True)
class FunctionSpec:
    """One registered function: its trigger (with %SETTING% resolved) and output bindings."""

    name: str
    func: Callable[..., Any]
    kind: str  # http | queue | timer
    arg_name: str
    trigger: Mapping[str, Any]
    connection: str | None = None  # storage connection string for queue triggers
    queue_outputs: tuple[Mapping[str, Any], ...] = ()
    wants_context: bool = False
    is_async: bool = field(default=False)


def load_functions(app: Any, settings: Mapping[str, str], config: HostConfig) -> list[FunctionSpec]:
    """Specs for the app's functions, honouring host.json `functions` and AzureWebJobs.<name>.Disabled."""
    specs = []
    # get_functions() remembers the names it saw and rejects them as duplicates on a second call, so
    # indexing the same app twice in one process (one DevHost per test) needs that memory cleared.
    if getattr(app, "functions_bindings", None):
        app.functions_bindings = None
    for function in app.get_functions():
        name = function.get_function_name()
        if config.functions is not None and name not in config.functions:
            continue
        if settings.get(f"AzureWebJobs.{name}.Disabled", "").strip().lower() in ("true", "1"):
            log.info("Function '%s' is disabled by app setting AzureWebJobs.%s.Disabled", name, name)
            continue
        specs.append(_spec(name, function, settings))
    return specs


def _spec(name: str, function: Any, settings: Mapping[str, str]) -> FunctionSpec:
    # function.json form: the same binding metadata the real host indexes, with enums as plain strings.
    bindings = json.loads(function.get_function_json())["bindings"]
    trigger = next((b for b in bindings if b["type"].endswith("Trigger")), None)
    if trigger is None or trigger["type"] not in TRIGGERS:
        raise ConfigError(f"function '{name}': devhost supports only {', '.join(TRIGGERS)} (found {trigger and trigger['type']})")
    what = f"function '{name}'"
    trigger = {k: resolve(v, settings, what=what) if isinstance(v, str) else v for k, v in trigger.items()}
    outputs = []
    for binding in bindings:
        if binding["type"].endswith("Trigger"):
            continue
        if binding["type"] == "http" and trigger["type"] == "httpTrigger":
            continue
        if binding["type"] != "queue" or binding.get("direction") != "OUT":
            raise ConfigError(f"{what}: devhost does not support the {binding['type']} binding '{binding['name']}'")
        queue = resolve(binding["queueName"], settings, what=what)
        conn = storage_connection(binding.get("connection"), settings, what=what)
        outputs.append({**binding, "queueName": queue, "connectionString": conn})
    kind = TRIGGERS[trigger["type"]]
    connection = storage_connection(trigger.get("connection"), settings, what=what) if kind == "queue" else None
    func = function.get_user_function()
    return FunctionSpec(
        name=name, func=func, kind=kind, arg_name=trigger["name"], trigger=trigger, connection=connection,
        queue_outputs=tuple(outputs), wants_context="context" in inspect.signature(func).parameters,
        is_async=inspect.iscoroutinefunction(func),
    )


@dataclass
class Context:
    """The subset of azure.functions.Context that user code reads."""

    invocation_id: str
    function_name: str
    function_directory: str = ""
    trace_context: Any = None
    retry_context: Any = None
    thread_local_storage: Any = field(default_factory=threading.local)


class Out:
    """A value holder for a func.Out[...] output binding parameter."""

    def __init__(self) -> None:
        """Start empty: nothing is sent unless the function calls set()."""
        self._value: Any = None

    def set(self, val: Any) -> None:
        """Set the value the binding sends after the function returns."""
        self._value = val

    def get(self) -> Any:
        """The value set so far."""
        return self._value


class Invoker:
    """Calls user functions: sync ones in the calling thread, async ones on one shared event loop."""

    def __init__(self, send_output: Callable[[Mapping[str, Any], Any], None]) -> None:
        """send_output(binding, value) delivers a queue output binding's value."""
        self._send_output = send_output
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the event loop thread (one loop, like the worker, so async clients can be shared)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="devhost-asyncio", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the event loop thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self._loop.close()
        self._loop = self._thread = None

    def invoke(self, spec: FunctionSpec, trigger_value: Any, reason: str) -> Any:
        """Run one invocation, deliver its outputs and log it; the user's exception propagates."""
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {spec.arg_name: trigger_value}
        outs = {b["name"]: Out() for b in spec.queue_outputs if b["name"] != "$return"}
        kwargs.update(outs)
        if spec.wants_context:
            kwargs["context"] = Context(invocation_id=invocation_id, function_name=spec.name)
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, invocation_id)
        started = time.monotonic()
        try:
            result = self._call(spec, kwargs)
            for binding in spec.queue_outputs:
                value = result if binding["name"] == "$return" else outs[binding["name"]].get()
                if value is not None:
                    self._send_output(binding, value)
        except BaseException:
            # The traceback goes to the log only; callers answer with a generic error.
            log.exception("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                          spec.name, invocation_id, (time.monotonic() - started) * 1000)
            raise
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
                 spec.name, invocation_id, (time.monotonic() - started) * 1000)
        return result

    def _call(self, spec: FunctionSpec, kwargs: dict[str, Any]) -> Any:
        if spec.is_async:
            return self._await(spec.func(**kwargs))
        result = spec.func(**kwargs)
        return self._await(result) if inspect.isawaitable(result) else result

    def _await(self, awaitable: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("devhost is not started")
        return asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), self._loop).result()


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable
