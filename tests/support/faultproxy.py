"""A fault-injecting reverse proxy in front of a real registry (stdlib, one thread per connection).

    with FaultProxy(source_registry) as proxy:          # proxy.host: use it as the registry
        rule = proxy.add("GET", r"/blobs/sha256:", Cut(after=64 * 1024), nth=1)
        ... import from proxy.host ...
        rule.fired, proxy.count("GET", r"/blobs/"), proxy.seen("GET", r"/blobs/")[-1].headers["range"]

A rule matches on method ("*" = any) and a regex searched in the request target (path and query); it counts every
request it matches (`hits`) and injects its fault on the occurrences in `nth` (1-based; an int, a
collection, or None for every one), counted in `fired`. Of the rules due to fire on a request the
first added wins; requests no rule fires on are forwarded untouched. Faults:

    Cut(after=N, reset=False)   forward the response, cut its body after N bytes (close, or RST)
    Status(code, ...)           answer without forwarding: 503/429/500/502/408/404/401..., an OCI error
                                body, `retry_after` seconds or `retry_after_date` seconds ahead as an
                                HTTP-date, extra headers (RateLimit-*)
    Stall(seconds, after=None)  wait before the response, or after N bytes of its body, then go on
    Reset()                     RST the connection (SO_LINGER 0) instead of answering
    NoRange()                   drop the request's Range header: the registry answers 200, whole body
    CutRequest(after=N)         forward N bytes of the request body, then RST both sides
    AddHeaders(headers)         forward, and add these headers to the answer (RateLimit-Remaining...)

The Host header is forwarded as sent, so Distribution's absolute Locations point back at the proxy.
Nothing here imports importcore.
"""
from __future__ import annotations

import email.utils
import http.client
import json
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Collection
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, Union

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "content-length"}
_PIECE = 64 * 1024


@dataclass(frozen=True)
class Cut:
    after: int
    reset: bool = False


@dataclass(frozen=True)
class Status:
    code: int
    oci_code: Optional[str] = None  # default: UNAVAILABLE/TOOMANYREQUESTS/... by status
    retry_after: Optional[int] = None
    retry_after_date: Optional[int] = None  # seconds from now, sent as an IMF-fixdate
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Stall:
    seconds: float
    after: Optional[int] = None


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class NoRange:
    pass


@dataclass(frozen=True)
class CutRequest:
    after: int


@dataclass(frozen=True)
class AddHeaders:
    headers: tuple[tuple[str, str], ...]


Fault = Union[Cut, Status, Stall, Reset, NoRange, CutRequest, AddHeaders]
_DEFAULT_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 408: "TIMEOUT",
                  429: "TOOMANYREQUESTS", 500: "UNKNOWN", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
                  504: "UNAVAILABLE"}


@dataclass
class Rule:
    method: str
    path: str  # regex, searched in the request target (path?query)
    fault: Fault
    nth: Union[int, Collection[int], None] = None
    hits: int = 0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and re.search(self.path, path) is not None

    def fires(self, occurrence: int) -> bool:
        if self.nth is None:
            return True
        return occurrence == self.nth if isinstance(self.nth, int) else occurrence in self.nth


@dataclass
class Seen:
    """A request as it reached the proxy, and what came of it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    fault: Optional[Fault] = None
    status: Optional[int] = None  # what the client was answered (None: no answer)
    bytes_in: int = 0  # request body bytes received from the client
    bytes_out: int = 0  # response body bytes sent to the client

    @property
    def url_path(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")


class _Abort(Exception):
    """Stop handling this connection (after a cut or a reset)."""


class FaultProxy:
    def __init__(self, upstream) -> None:
        url = urllib.parse.urlsplit(upstream.url if hasattr(upstream, "url") else str(upstream))
        self.upstream = (url.hostname, url.port or 80)
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self.port: Optional[int] = None

    # ---- script ----------------------------------------------------------------------------
    def add(self, method: str, path: str, fault: Fault, *, nth: Union[int, Collection[int], None] = None) -> Rule:
        rule = Rule(method.upper() if method != "*" else "*", path, fault, nth)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    # ---- what happened ---------------------------------------------------------------------
    def seen(self, method: Optional[str] = None, path: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.requests
                    if (method is None or s.method == method) and re.search(path, s.url_path)]

    def count(self, method: Optional[str] = None, path: str = "") -> int:
        return len(self.seen(method, path))

    @property
    def total(self) -> int:
        with self._lock:
            return len(self.requests)

    def bytes_out(self, method: Optional[str] = None, path: str = "") -> int:
        return sum(s.bytes_out for s in self.seen(method, path))

    def bytes_in(self, method: Optional[str] = None, path: str = "") -> int:
        return sum(s.bytes_in for s in self.seen(method, path))

    # ---- addresses and lifecycle -----------------------------------------------------------
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> "FaultProxy":
        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):  # cut and reset connections are the point
                pass

        self._httpd = _Server(("127.0.0.1", 0), _handler_for(self))
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                         name=f"faultproxy-{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends stalls early
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FaultProxy({self.url} -> {self.upstream[0]}:{self.upstream[1]})"

    # ---- dispatch --------------------------------------------------------------------------
    def _fault_for(self, method: str, path: str) -> Optional[Fault]:
        """Every matching rule counts the request; the first one due to fire on it wins."""
        chosen = None
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    if chosen is None and rule.fires(rule.hits):
                        rule.fired += 1
                        chosen = rule.fault
        return chosen

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _error_body(status: Status) -> bytes:
    code = status.oci_code or _DEFAULT_CODES.get(status.code, "UNKNOWN")
    return json.dumps({"errors": [{"code": code, "message": f"injected {status.code} {code}"}]}).encode()


def _handler_for(proxy: FaultProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _reset(self) -> None:
            """Close with an RST: SO_LINGER on, zero timeout."""
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass
            raise _Abort

        def _cut(self, reset: bool) -> None:
            if reset:
                self._reset()
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            raise _Abort

        # -- request body -----------------------------------------------------------------------
        def _body_pieces(self):
            """The request body as it arrives (Content-Length or chunked), piece by piece."""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return
                    yield from self._exactly(size)
                    self.rfile.readline()
            yield from self._exactly(int(self.headers.get("Content-Length") or 0))

        def _exactly(self, left: int):
            """The next `left` bytes of the request, piece by piece; a client that stops short aborts."""
            while left:
                piece = self.rfile.read(min(left, _PIECE))
                if not piece:
                    raise _Abort
                left -= len(piece)
                yield piece

        def _dispatch(self):
            split = urllib.parse.urlsplit(self.path)
            seen = Seen(self.command, split.path, split.query, {k.lower(): v for k, v in self.headers.items()})
            with proxy._lock:
                proxy.requests.append(seen)
            fault = proxy._fault_for(self.command, seen.url_path)
            seen.fault = fault
            try:
                if isinstance(fault, Reset):
                    self._reset()
                if isinstance(fault, Status):
                    for piece in self._body_pieces():  # drained first: the client then reads our answer
                        seen.bytes_in += len(piece)
                    self._answer(fault, seen)
                    return
                self._forward(fault, seen)
            except _Abort:
                self.close_connection = True
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
                self.close_connection = True

        def _answer(self, fault: Status, seen: Seen) -> None:
            body = b"" if self.command == "HEAD" else _error_body(fault)
            self.send_response_only(fault.code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(_error_body(fault))))
            if fault.retry_after is not None:
                self.send_header("Retry-After", str(fault.retry_after))
            if fault.retry_after_date is not None:
                when = time.time() + fault.retry_after_date
                self.send_header("Retry-After", email.utils.formatdate(when, usegmt=True))
            for name, value in fault.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            seen.status, seen.bytes_out = fault.code, len(body)

        def _forward(self, fault: Optional[Fault], seen: Seen) -> None:
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    lower = name.lower()
                    if lower in _HOP_BY_HOP or (lower == "range" and isinstance(fault, NoRange)):
                        continue
                    upstream.putheader(name, value)
                chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
                if chunked:
                    upstream.putheader("Transfer-Encoding", "chunked")
                elif self.headers.get("Content-Length") is not None:
                    upstream.putheader("Content-Length", self.headers["Content-Length"])
                upstream.endheaders()
                for piece in self._body_pieces():
                    if isinstance(fault, CutRequest) and seen.bytes_in + len(piece) > fault.after:
                        piece = piece[:fault.after - seen.bytes_in]
                        upstream.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked and piece else piece)
                        seen.bytes_in += len(piece)
                        time.sleep(0.05)  # let the registry take the bytes before the connection drops
                        _reset_socket(upstream.sock)
                        self._reset()
                    seen.bytes_in += len(piece)
                    upstream.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                if chunked:
                    upstream.send(b"0\r\n\r\n")
                response = upstream.getresponse()
                if isinstance(fault, Stall) and fault.after is None:
                    proxy._sleep(fault.seconds)
                self._relay(response, fault, seen)
            finally:
                upstream.close()

        def _relay(self, response: http.client.HTTPResponse, fault: Optional[Fault], seen: Seen) -> None:
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            if isinstance(fault, AddHeaders):
                for name, value in fault.headers:
                    self.send_header(name, value)
            length = response.getheader("Content-Length")
            has_body = self.command != "HEAD" and response.status not in (204, 304) and response.status >= 200
            if length is not None:
                self.send_header("Content-Length", length)
            elif has_body:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            seen.status = response.status
            if not has_body:
                return
            while True:
                piece = response.read1(_PIECE) if length is not None else response.read(_PIECE)
                if not piece:
                    break
                if isinstance(fault, Cut) and seen.bytes_out + len(piece) >= fault.after:
                    piece = piece[:fault.after - seen.bytes_out]
                    self._send_piece(piece, chunked=length is None, seen=seen)
                    self._cut(fault.reset)
                if isinstance(fault, Stall) and fault.after is not None and \
                        seen.bytes_out < fault.after <= seen.bytes_out + len(piece):
                    split = fault.after - seen.bytes_out
                    self._send_piece(piece[:split], chunked=length is None, seen=seen)
                    self.wfile.flush()
                    proxy._sleep(fault.seconds)
                    piece = piece[split:]
                self._send_piece(piece, chunked=length is None, seen=seen)
            if length is None:
                self.wfile.write(b"0\r\n\r\n")

        def _send_piece(self, piece: bytes, *, chunked: bool, seen: Seen) -> None:
            if not piece:
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            seen.bytes_out += len(piece)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    return Handler


def _reset_socket(sock: Optional[socket.socket]) -> None:
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
