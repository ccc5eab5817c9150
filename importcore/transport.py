"""The HTTP client every registry request goes through: guarded connects, no proxies from env.

httpx follows neither redirects nor proxy variables here: registry.py follows redirects itself
(to drop credentials across origins and refuse downgrades), and an operator's HTTP(S)_PROXY
must not turn a refused address into an allowed one.
"""

from __future__ import annotations

import ssl
import typing

import httpcore
import httpx

from . import redact
from .hostpolicy import HostPolicy

__all__ = ["make_http_client"]

# Large reads keep our per-byte CPU low: fewer Python-level iterations per MiB.
CHUNK = 1024 * 1024


class _GuardedBackend(httpcore.SyncBackend):
    """Resolve, check the policy, then connect to the checked address (no second DNS lookup)."""

    def __init__(self, policy: HostPolicy) -> None:
        self._policy = policy

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in self._policy.resolve(host, port):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:  # try the next checked address, as a browser would
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")


def make_http_client(policy: HostPolicy, *, max_connections: int = 16, timeout: float = 60.0) -> httpx.Client:
    redact.install()  # httpx logs request URLs; upload URLs carry _state
    transport = httpx.HTTPTransport(retries=0)
    # httpx 0.28 does not expose network_backend; the pool is rebuilt with ours (pinned version).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=ssl.create_default_context(),
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
        network_backend=_GuardedBackend(policy),
    )
    return httpx.Client(
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout, connect=15.0),
        headers={"User-Agent": "registry-importer/0.1"},
    )
