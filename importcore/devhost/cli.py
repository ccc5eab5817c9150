"""`python -m importcore serve` (its flags are parsed in cli/commands.py): load function_app.py, host.json
and local.settings.json, run until stopped."""
from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ..values.errors import ConfigError, ImporterError, UsageError
from .host import DevHost

log = logging.getLogger("importcore.devhost")


def run(*, port: int = 7071, host: str = "127.0.0.1", app_module: str = "function_app",
        host_json: Path | None = None) -> int:
    """serve(), with a start-up that cannot work reported as one `error: ...` line on stderr.

    Exit status 2: the configuration is wrong (an app setting, host.json, local.settings.json, a
    binding); 1: something must be started or freed first (storage unreachable, port taken); 0: stopped.
    """
    try:
        serve(port=port, host=host, app_module=app_module, host_json=host_json)
    except (ConfigError, UsageError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except ImporterError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _one_line(exc: Exception) -> str:
    message = exc.message if isinstance(exc, ImporterError) else str(exc)
    return " ".join(message.split())


def serve(*, port: int = 7071, host: str = "127.0.0.1", app_module: str = "function_app",
          host_json: Path | None = None) -> None:
    """Run the app in the current directory (like `func start`) until SIGINT or SIGTERM.

    Start-up failures raise ConfigError or UsageError (configuration) or ImporterError (storage
    unreachable, port taken), each with a message that names what to fix."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Like `func start`: show invocations and the functions' own INFO logs, even if a caller set WARNING.
    logging.getLogger().setLevel(logging.INFO)
    # The SDKs log every storage request at INFO; queue polling would drown the invocation log.
    logging.getLogger("azure").setLevel(logging.WARNING)
    root = Path.cwd()
    _load_local_settings(root / "local.settings.json")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    app = _find_app(_import_app(app_module), app_module)
    path = host_json or root / "host.json"
    config = _read_json(path) if path.exists() else {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path.name}: must be a JSON object, not {type(config).__name__}")
    devhost = DevHost(app, host_json=config, port=port, bind=host).start()
    stopping = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
    try:
        stopping.wait()
    finally:
        log.info("Stopping the host")
        devhost.stop()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.name}: cannot be read: {exc}") from None


def _import_app(name: str) -> Any:
    # The module's own start-up errors (a setting it cannot use) propagate as they are: they name it.
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise ConfigError(f"no module '{name}' in {Path.cwd()}: run serve in the function app's directory") from None


def _load_local_settings(path: Path) -> None:
    # Core Tools semantics: Values become environment variables, but a variable already set wins.
    if not path.exists():
        return
    document = _read_json(path)
    values = (document.get("Values") or {}) if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise ConfigError(f"{path.name}: expected an object with a \"Values\" object of app settings")
    for key, value in values.items():
        os.environ.setdefault(key, str(value))
    log.info("Loaded %d app settings from %s", len(values), path.name)


def _find_app(module: Any, name: str) -> Any:
    app = getattr(module, "app", None)
    if app is not None and hasattr(app, "get_functions"):
        return app
    found = [v for v in vars(module).values() if hasattr(v, "get_functions") and not isinstance(v, type)]
    if len(found) != 1:
        raise ConfigError(f"module '{name}' must define one FunctionApp (named `app`)")
    return found[0]
