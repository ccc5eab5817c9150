"""function_app.py indexed as the Python worker indexes it: imported with the app settings in the
environment, since its bindings take their queue names and schedule from Settings.from_env()."""
from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Mapping
from types import ModuleType


def index_function_app(env: Mapping[str, str], *, unset: Iterable[str] = ()) -> ModuleType:
    """(Re)import function_app with `env` set and `unset` removed from os.environ; the environment is
    restored afterwards, the module keeps the bindings it was indexed with. Returns the module."""
    names = [*env, *unset]
    saved = {name: os.environ.get(name) for name in names}
    try:
        for name in unset:
            os.environ.pop(name, None)
        os.environ.update(env)
        module = sys.modules.get("function_app")
        return importlib.reload(module) if module is not None else importlib.import_module("function_app")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
