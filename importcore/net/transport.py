"""The HTTP client every registry request goes through: guarded connects, no proxies from env.

httpx follows neither redirects nor proxy variables here: registry.py follows redirects itself
(to drop credentials across origins and refuse downgrades), and an operator's HTTP(S)_PROXY
must not turn a refused address into an allowed one.
"""

from __future__ import annotations

import functools
import http.cookiejar
import socket
import ssl
import typing

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

from ..observe import redact
from ..values.version import __version__
from .bodies import MAX_ERROR_BODY, limited
from .hostpolicy import HostPolicy

__all__ = ["make_http_client"]

# Reads of up to 256 KiB instead of httpcore's 64 KiB: a quarter of the Python-level work per MiB
# received. 1 MiB saved no more CPU (bench/, scenario 1) and grew the peak RSS by ~25 MiB.
READ_SIZE = 256 * 1024


class _CappedStream(httpx.SyncByteStream):
    """At most `cap` bytes of a response body; closing it then drops the connection undrained."""

    def __init__(self, stream: httpx.SyncByteStream, cap: int) -> None:
        self._stream, self._cap = stream, cap

    def __iter__(self) -> typing.Iterator[bytes]:
        return limited(self._stream, self._cap)

    def close(self) -> None:
        self._stream.close()


class _Transport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        # A sync transport's responses stream synchronously; the check only tells the type checker.
        if response.status_code >= 400 and isinstance(response.stream, httpx.SyncByteStream):
            response.stream = _CappedStream(response.stream, MAX_ERROR_BODY)
        return response


class _Stream(SyncStream):
    """httpcore's socket stream with large reads and one sendall per write.

    httpcore asks for 64 KiB per read and re-slices a bytes buffer after every partial send. Blob
    bodies are what this client mostly moves: reading up to READ_SIZE per call and handing the
    whole buffer to sendall cut our CPU per 256 MiB copied by ~0.08 s, a seventh (bench/,
    scenario 1). For TLS the socket returns one record per read whatever is asked. The write
    timeout now bounds the whole buffer (one body chunk, a manifest or a small blob: at most a few
    MiB) rather than each partial send."""

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            self._sock.settimeout(timeout)
            return self._sock.recv(max(max_bytes, READ_SIZE))
        except socket.timeout as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(buffer)
        except socket.timeout as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        stream = super().start_tls(ssl_context, server_hostname, timeout)
        return _Stream(stream.get_extra_info("socket")) if type(stream) is SyncStream else stream


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
                stream = super().connect_tcp(address, port, timeout, local_address, socket_options)
                return _Stream(stream.get_extra_info("socket"))
            except httpcore.ConnectError as exc:  # try the next checked address, as a browser would
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~20 ms of CPU; one context per process serves every client.
    return ssl.create_default_context()


def make_http_client(policy: HostPolicy, *, max_connections: int = 16, timeout: float = 60.0) -> httpx.Client:
    redact.install()  # httpx logs request URLs; upload URLs carry _state
    transport = _Transport(retries=0, verify=_tls_context())
    # httpx 0.28 does not expose network_backend; the pool is rebuilt with ours (pinned version).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=_tls_context(),
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
        network_backend=_GuardedBackend(policy),
    )
    client = httpx.Client(
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout, connect=15.0),
        headers={"User-Agent": f"registry-importer/{__version__}"},
    )
    # No cookie jar: registries need none, and a jar would carry one server's cookie to any other
    # port of the same host (cookie domains ignore ports), e.g. a source's to the target. Docker's
    # and containerd's clients keep none either.
    client.cookies.jar.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return client
