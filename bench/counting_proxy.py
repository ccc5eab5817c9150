"""A small counting reverse proxy for one registry: every request, connection and blob byte, tallied;
optionally a wide-area network in between.

Clients are pointed at 127.0.0.1:<proxy port> instead of the registry; the Host header is passed
through unchanged, so the upload Locations Distribution builds from it point back at the proxy.
Bodies are streamed (Content-Length or chunked, both directions): a 2 GiB layer passes through
in 1 MiB pieces.

With `rtt` (seconds) the proxy is a WAN: each request is held rtt/2 before it goes to the registry
and its response rtt/2 before it goes back, so every request costs one round trip more than on
loopback, and requests a client keeps in flight at once overlap their waits as they would over a
real link. `connect_rtt` is charged once per new connection, before its first request is read (the
TCP handshake a client waits for before it can send; 0 = connection set-up free). Bandwidth is not
limited. A TLS ClientHello (skopeo probes https before falling back to plain http) is closed at once
and not charged: in production that would have been the connection, and its handshake is not
modelled for either tool. Without `rtt` (scenarios 3 and 4) it only counts; those runs are untimed.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["CountingProxy"]

CHUNK = 1024 * 1024
_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade"}
_BLOB_GET = re.compile(r"^/v2/.+/blobs/sha\d+:[0-9a-f]+")
_UPLOAD = re.compile(r"^/v2/.+/blobs/uploads/")


def _kind(method: str, path: str) -> str:
    """A coarse request class: manifest, blob, upload or other (with the method)."""
    path = path.split("?", 1)[0]
    if _UPLOAD.match(path):
        return f"{method} upload"
    if _BLOB_GET.match(path):
        return f"{method} blob"
    if "/manifests/" in path:
        return f"{method} manifest"
    if path.endswith("/tags/list"):
        return f"{method} tags"
    return f"{method} {path if path in ('/v2/', '/v2') else 'other'}"


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.by_kind: Counter[str] = Counter()
        self.upload_bytes = 0  # request bodies sent to upload sessions (PATCH/PUT/POST)
        self.download_bytes = 0  # response bodies of blob GETs
        self.connections = 0  # client connections that sent a request
        self.tls_probes = 0  # connections that opened with a TLS ClientHello (closed, not charged)
        self.spans: list[tuple[float, float, str]] = []  # (arrived, answered, kind) per request, time.monotonic()

    def snapshot(self) -> dict:
        with self.lock:
            spans = sorted(self.spans)
            first = spans[0][0] if spans else None
            last = max((end for _, end, _ in spans), default=None)
            busy = sum(end - start for start, end, _ in spans)
            return {"requests": self.requests, "by_kind": dict(sorted(self.by_kind.items())),
                    "upload_bytes": self.upload_bytes, "download_bytes": self.download_bytes,
                    "blob_bytes": self.upload_bytes + self.download_bytes,
                    "connections": self.connections, "tls_probes": self.tls_probes,
                    "first_request_at": first, "last_response_at": last, "request_seconds": busy,
                    "timeline": spans}

    def reset(self) -> None:
        with self.lock:
            self.requests, self.upload_bytes, self.download_bytes = 0, 0, 0
            self.connections, self.tls_probes = 0, 0
            self.by_kind.clear()
            self.spans.clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY towards the client, as the registries (Go) and the upstream connection have it: the
    # headers and the body go out in separate writes, and with Nagle the body would wait for the
    # client's delayed ACK (40 ms on Linux) — a stall no real registry adds.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def handle(self) -> None:
        stats = self.server.stats
        try:
            first = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if not first:
            return
        if first == b"\x16":  # TLS handshake record: a client probing https on this plain-http port
            with stats.lock:
                stats.tls_probes += 1
            return
        with stats.lock:
            stats.connections += 1
        if self.server.connect_rtt:
            time.sleep(self.server.connect_rtt)
        super().handle()

    def _upstream(self) -> http.client.HTTPConnection:
        conn = getattr(self, "_conn", None)
        if conn is None:
            conn = self._conn = http.client.HTTPConnection(*self.server.upstream, timeout=600)
        return conn

    def _proxy(self) -> None:
        method, path = self.command, self.path
        arrived = time.monotonic()
        kind = _kind(method, path)
        stats = self.server.stats
        half = self.server.rtt / 2
        with stats.lock:
            stats.requests += 1
            stats.by_kind[kind] += 1
        if half:
            time.sleep(half)  # the request crossing the link
        length = self.headers.get("Content-Length")
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        try:
            conn = self._upstream()
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP and not (chunked and name.lower() == "content-length"):
                    conn.putheader(name, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            sent = self._forward_body(conn, length, chunked)
            if kind.endswith(" upload"):
                with stats.lock:
                    stats.upload_bytes += sent
            response = conn.getresponse()
        except (OSError, http.client.HTTPException):
            self._conn = None
            self.close_connection = True
            return
        if half:
            time.sleep(half)  # the response crossing back
        self.send_response_only(response.status, response.reason)
        declared = response.getheader("Content-Length")
        no_body = method == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        for name, value in response.getheaders():
            if name.lower() not in _HOP:
                self.send_header(name, value)
        if not no_body and declared is None:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        received = 0
        if not no_body:
            while True:
                piece = response.read1(CHUNK)
                if not piece:
                    break
                received += len(piece)
                if declared is None:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    self.wfile.write(piece)
            if declared is None:
                self.wfile.write(b"0\r\n\r\n")
        response.close()
        with stats.lock:
            stats.spans.append((arrived, time.monotonic(), kind))
            if method == "GET" and kind.endswith(" blob"):
                stats.download_bytes += received
        if response.will_close:
            self._conn = None

    def _forward_body(self, conn: http.client.HTTPConnection, length: str | None, chunked: bool) -> int:
        sent = 0
        if chunked:
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    conn.send(b"0\r\n\r\n")
                    return sent
                conn.send(b"%x\r\n" % size)
                sent += self._copy_exactly(conn, size, "mid-chunk")
                conn.send(b"\r\n")
                self.rfile.readline()
        return sent + self._copy_exactly(conn, int(length or 0), "mid-body")

    def _copy_exactly(self, conn: http.client.HTTPConnection, remaining: int, where: str) -> int:
        """Forward the next `remaining` bytes of the request; returns them counted."""
        sent = 0
        while remaining:
            piece = self.rfile.read(min(CHUNK, remaining))
            if not piece:
                raise OSError(f"client closed {where}")
            conn.send(piece)
            remaining -= len(piece)
            sent += len(piece)
        return sent

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    request_queue_size = 128  # skopeo 1.9 opens a connection per request, many at once

    def __init__(self, upstream: tuple[str, int], rtt: float, connect_rtt: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.rtt, self.connect_rtt = rtt, connect_rtt
        self.stats = _Stats()


class CountingProxy:
    """`with CountingProxy("127.0.0.1:5000") as p:` then talk to p.host; p.stats() / p.reset().

    `rtt`, `connect_rtt` (seconds): the WAN it adds (module docstring); 0 = loopback."""

    def __init__(self, upstream: str, *, rtt: float = 0.0, connect_rtt: float = 0.0) -> None:
        host, _, port = upstream.rpartition(":")
        self._server = _Server((host, int(port)), rtt, connect_rtt)
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def stats(self) -> dict:
        return self._server.stats.snapshot()

    def reset(self) -> None:
        self._server.stats.reset()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

