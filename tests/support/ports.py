"""Free loopback ports and waiting for HTTP servers to come up."""
from __future__ import annotations

import socket
import time

import httpx


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the kernel picks it; callers retry on clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 10.0, ok=(200, 401), alive=None) -> httpx.Response:
    """Poll GET url until its status is in `ok`; return that response.

    `alive` is an optional callable returning False when the server process has died, so a
    crashed server fails at once instead of after the whole timeout.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"server for {url} exited during startup")
        try:
            r = httpx.get(url, timeout=1.0)
            if r.status_code in ok:
                return r
            last = f"HTTP {r.status_code}"
        except httpx.TransportError as e:
            last = e
        time.sleep(0.02)
    raise TimeoutError(f"{url} not ready after {timeout}s (last: {last!r})")
