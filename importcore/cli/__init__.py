"""The one-shot command line: `python -m importcore import|serve`."""

from .commands import main

__all__ = ["main"]
