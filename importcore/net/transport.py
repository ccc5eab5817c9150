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
import threading
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


class _TrustOnFirstUse(ssl.SSLContext):
    """create_default_context()'s verification (CERT_REQUIRED, hostname checks, the system CA
    bundle), with the bundle loaded when the first TLS connection is made: loading it costs ~20 ms
    of CPU, which a CLI run that speaks only plain HTTP, or starts, never needs to pay up front."""

    _lock = threading.Lock()
    _loaded = False

    def wrap_socket(self, *args: typing.Any, **kwargs: typing.Any) -> ssl.SSLSocket:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self.load_default_certs(ssl.Purpose.SERVER_AUTH)
                    self._loaded = True
        return super().wrap_socket(*args, **kwargs)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # One context per process serves every client (building one is 44 ms with its bundle).
    return _TrustOnFirstUse(ssl.PROTOCOL_TLS_CLIENT)  # verify_mode CERT_REQUIRED, check_hostname on


class _Pool(httpcore.ConnectionPool):
    """httpcore 1.0's pool, assigning requests to connections in linear time.

    Its own assignment, run under the pool's lock whenever a request starts or a response closes,
    builds a list of every connection for each idle one (quadratic), and lists all the available and
    all the idle connections for each queued request. With 16 blobs in flight on 32 connections that
    was an eighth of the CPU of an import of 100 small layers (bench/: 1022 -> 897 M instructions).
    Same decisions, same order: the first available connection to the origin, else a new one while
    under max_connections, else the first idle one is closed to make room."""

    def _assign_requests_to_connections(self) -> list[httpcore.ConnectionInterface]:
        closing: list[httpcore.ConnectionInterface] = []
        connections = self._connections
        for connection in list(connections):
            if connection.is_closed():
                connections.remove(connection)
            elif connection.has_expired():
                connections.remove(connection)
                closing.append(connection)
        surplus = len(connections) - self._max_keepalive_connections
        for connection in [c for c in connections if c.is_idle()][:max(surplus, 0)]:
            connections.remove(connection)
            closing.append(connection)
        for pool_request in [r for r in self._requests if r.is_queued()]:
            origin = pool_request.request.url.origin
            found = next((c for c in connections if c.can_handle_request(origin) and c.is_available()), None)
            if found is None:
                if len(connections) >= self._max_connections:
                    idle = next((c for c in connections if c.is_idle()), None)
                    if idle is None:
                        continue  # stays queued until a response closes
                    connections.remove(idle)
                    closing.append(idle)
                found = self.create_connection(origin)
                connections.append(found)
            pool_request.assign_to_connection(found)
        return closing


def make_http_client(policy: HostPolicy, *, max_connections: int = 16, timeout: float = 60.0) -> httpx.Client:
    redact.install()  # httpx logs request URLs; upload URLs carry _state
    transport = _Transport(retries=0, verify=_tls_context())
    # httpx 0.28 does not expose network_backend; the pool is rebuilt with ours (pinned versions).
    transport._pool = _Pool(
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
    client._cookies = _NoCookies(client.cookies)  # (httpx 0.28, pinned: `cookies=` would copy the jar)
    return client


class _NoCookies(httpx.Cookies):
    """A jar responses are not even offered to: httpx would build a urllib request and response per
    response to show it the Set-Cookie headers, a tenth of the CPU of an import of small blobs."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass
