"""A rich progress bar on a terminal for long copies; silent otherwise."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..engine.imagecopy import Progress

__all__ = ["progress_reporter"]


@contextmanager
def progress_reporter(*, enabled: bool) -> Iterator[Callable[[Progress], None]]:
    if not enabled:
        yield lambda p: None
        return
    from rich.progress import (BarColumn, DownloadColumn, Progress as Bar, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    lock = threading.Lock()
    last = [0.0]
    with Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
             TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("resolving", total=None)

        def update(p: Progress) -> None:
            now = time.monotonic()
            with lock:
                if now - last[0] < 0.1 and p.phase == "copying":
                    return  # throttle: the bar does not need every 64 KiB chunk
                last[0] = now
            bar.update(task, description=f"{p.phase} {p.blobs_done}/{p.blobs_total} blobs",
                       completed=p.bytes_done, total=p.bytes_total or None)

        yield update
