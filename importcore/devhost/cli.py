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

from .host import DevHost

log = logging.getLogger("importcore.devhost")


def serve(*, port: int = 7071, host: str = "127.0.0.1", app_module: str = "function_app",
          host_json: Path | None = None) -> None:
    """Run the app in the current directory (like `func start`) until SIGINT or SIGTERM."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Like `func start`: show invocations and the functions' own INFO logs, even if a caller set WARNING.
    logging.getLogger().setLevel(logging.INFO)
    # The SDKs log every storage request at INFO; queue polling would drown the invocation log.
    logging.getLogger("azure").setLevel(logging.WARNING)
    root = Path.cwd()
    _load_local_settings(root / "local.settings.json")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    app = _find_app(importlib.import_module(app_module), app_module)
    path = host_json or root / "host.json"
    config = json.loads(path.read_text()) if path.exists() else {}
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


def _load_local_settings(path: Path) -> None:
    # Core Tools semantics: Values become environment variables, but a variable already set wins.
    if not path.exists():
        return
    values = json.loads(path.read_text()).get("Values") or {}
    for key, value in values.items():
        os.environ.setdefault(key, str(value))
    log.info("Loaded %d app settings from %s", len(values), path.name)


def _find_app(module: Any, name: str) -> Any:
    app = getattr(module, "app", None)
    if app is not None and hasattr(app, "get_functions"):
        return app
    found = [v for v in vars(module).values() if hasattr(v, "get_functions") and not isinstance(v, type)]
    if len(found) != 1:
        raise SystemExit(f"error: module '{name}' must define one FunctionApp (named `app`)")
    return found[0]
