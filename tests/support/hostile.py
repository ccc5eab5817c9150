"""A tiny scriptable HTTP server that records everything it receives and answers per a script.

It plays the untrusted parties of the threat model (SECURITY.md): a source registry, the far end
of a redirect, a token realm. It counts TCP connections (so "never contacted" includes a TLS
ClientHello or a bare connect) and the body bytes it managed to write (so "read no further than
the cap" can be checked from the sender's side).

    with HostileServer() as srv:
        desc = srv.blob("r", b"layer bytes")
        srv.manifest("r", "v1", raw, OCI_MANIFEST)
        srv.on("GET", f"/v2/r/blobs/{desc['digest']}", Reply.redirect(other.url + "/storage/x"))
        srv.auth = BasicAuth("alice", "pw")    # or BearerAuth(token=..., realm=...)
        ...
        srv.requests[-1].headers.get("authorization"); srv.connections; srv.sent

Plain stdlib (http.server in a thread on a free port); nothing here imports importcore.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, Union
from .httpserver import serve_in_background, stop_server

MiB = 1024 * 1024
# A small kernel send buffer: what the server "sent" is then close to what the client took.
_SNDBUF = 64 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def endless(total: int = 100 * MiB, chunk: int = 256 * 1024, byte: bytes = b"x") -> Callable[[], Iterator[bytes]]:
    """A body factory yielding `total` bytes in `chunk`-sized pieces, generated on the fly."""
    piece = byte * chunk

    def gen() -> Iterator[bytes]:
        left = total
        while left > 0:
            n = min(chunk, left)
            yield piece[:n]
            left -= n

    return gen


@dataclass
class Reply:
    """One scripted answer. body: bytes, or a zero-argument callable returning an iterator of bytes.

    length: the Content-Length to declare; None = len(body) for bytes, chunked for a callable.
    Use length=-1 to send neither (HTTP/1.0-style body up to the close).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Union[bytes, Callable[[], Iterable[bytes]]] = b""
    length: Optional[int] = None
    chunk_delay: float = 0.0  # seconds to sleep before each streamed chunk (a slow body)

    @classmethod
    def json(cls, obj, status: int = 200, content_type: str = "application/json", **headers) -> "Reply":
        return cls(status, {"Content-Type": content_type, **headers}, json.dumps(obj).encode())

    @classmethod
    def redirect(cls, location: str, status: int = 307) -> "Reply":
        return cls(status, {"Location": location})

    @classmethod
    def error(cls, status: int, code: str, message: str = "") -> "Reply":
        return cls.json({"errors": [{"code": code, "message": message or code.lower()}]}, status)


@dataclass
class Seen:
    """A request as received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    port: int

    @property
    def authorization(self) -> Optional[str]:
        return self.headers.get("authorization")


@dataclass
class BasicAuth:
    username: str
    password: str
    challenge_body: Optional[Callable[[], Iterable[bytes]]] = None  # a 401's body (default: small JSON)

    def ok(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    def challenge(self, server: "HostileServer", seen: Seen) -> str:
        return 'Basic realm="hostile"'


@dataclass
class BearerAuth:
    """Registry-style bearer auth; the token endpoint is /token on this server unless `realm` says
    otherwise. With `basic`, /token wants those credentials."""

    token: str
    realm: Optional[str] = None
    basic: Optional[BasicAuth] = None
    challenge_body: Optional[Callable[[], Iterable[bytes]]] = None  # a 401's body (default: small JSON)

    def ok(self, header: str) -> bool:
        return header == f"Bearer {self.token}"

    def challenge(self, server: "HostileServer", seen: Seen) -> str:
        parts = seen.path.split("/")
        repo = "/".join(parts[2:-2]) if len(parts) > 4 else "x"
        realm = self.realm or f"{server.url}/token"
        return f'Bearer realm="{realm}",service="hostile",scope="repository:{repo}:pull"'


Route = Union[Reply, Callable[[Seen], Reply]]


class HostileServer:
    """See the module docstring. Routes are (METHOD, exact path); the first match answers.

    Built in: GET/HEAD /v2/ -> 200 {} (or the auth challenge), GET /token -> {"token": ...} when
    `auth` is a BearerAuth, everything else -> 404 with an OCI error body.
    """

    def __init__(self, bind: str = "127.0.0.1") -> None:
        self.bind = bind
        self.routes: dict[tuple[str, str], Route] = {}
        self.auth: Union[BasicAuth, BearerAuth, None] = None
        self.requests: list[Seen] = []
        self.connections = 0
        self.sent = 0  # body bytes written successfully, over all responses
        self.aborted = 0  # responses whose body the client did not take to the end
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self.port: Optional[int] = None

    # ---- addresses -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"[{self.bind}]:{self.port}" if ":" in self.bind else f"{self.bind}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # ---- script ----------------------------------------------------------------------------
    def on(self, method: str, path: str, reply: Route) -> None:
        self.routes[(method.upper(), path)] = reply

    def blob(self, repo: str, data: bytes, media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip") -> dict:
        """Serve `data` as a blob of `repo` (GET and HEAD); return its descriptor."""
        digest = sha256(data)
        self.on("GET", f"/v2/{repo}/blobs/{digest}", Reply(200, {"Content-Type": "application/octet-stream",
                                                                "Docker-Content-Digest": digest}, data))
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def manifest(self, repo: str, tag: Optional[str], raw: bytes, content_type: str, *,
                 reply: Optional[Reply] = None) -> str:
        """Serve `raw` under its digest (and `tag`) with this Content-Type; `reply` overrides the answer."""
        digest = sha256(raw)
        answer = reply or Reply(200, {"Content-Type": content_type, "Docker-Content-Digest": digest}, raw)
        for ref in filter(None, (digest, tag)):
            self.on("GET", f"/v2/{repo}/manifests/{ref}", answer)
        return digest

    def image(self, repo: str, tag: Optional[str] = "v1", *, layers: Iterable[bytes] = (b"layer-one",),
              media_type: str = "application/vnd.oci.image.manifest.v1+json") -> tuple[bytes, str, list[dict]]:
        """Serve a small image manifest + config + layers; return (raw, digest, [config, *layers])."""
        config = self.blob(repo, json.dumps({"architecture": "amd64", "os": "linux"}).encode(),
                           "application/vnd.oci.image.config.v1+json")
        descs = [self.blob(repo, data) for data in layers]
        raw = json.dumps({"schemaVersion": 2, "mediaType": media_type, "config": config, "layers": descs}).encode()
        return raw, self.manifest(repo, tag, raw, media_type), [config, *descs]

    # ---- what happened ---------------------------------------------------------------------
    def seen(self, method: Optional[str] = None, path_prefix: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.requests
                    if (method is None or s.method == method) and s.path.startswith(path_prefix)]

    @property
    def contacted(self) -> bool:
        return self.connections > 0 or bool(self.requests)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "HostileServer":
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        server = self

        class _Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True
            allow_reuse_address = True

            def process_request(self, request, client_address):
                with server._lock:
                    server.connections += 1
                super().process_request(request, client_address)

            def handle_error(self, request, client_address):
                # A client dropping a connection (an aborted body, a pooled keep-alive closed) is the
                # point of many tests, not a failure; anything else still prints its traceback.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._httpd = _Server((self.bind, 0), _handler_for(self))
        # A short poll interval: shutdown() waits for it, and tests start many servers.
        self.port = serve_in_background(self._httpd, "hostile", poll_interval=0.02)
        return self

    def stop(self) -> None:
        stop_server(self._httpd)
        self._httpd = None

    def __enter__(self) -> "HostileServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"HostileServer({self.url})"

    # ---- dispatch (handler threads) -----------------------------------------------------------
    def _answer(self, seen: Seen) -> Reply:
        route = self.routes.get((seen.method, seen.path))
        if route is None and seen.method == "HEAD":
            route = self.routes.get(("GET", seen.path))
        if isinstance(self.auth, BearerAuth) and seen.path == "/token" and route is None:
            basic = self.auth.basic
            if basic is not None and not basic.ok(seen.authorization or ""):
                return Reply.json({"errors": [{"code": "UNAUTHORIZED"}]}, 401)
            return Reply.json({"token": self.auth.token, "expires_in": 300})
        if self.auth is not None and seen.path.startswith("/v2/") and not self.auth.ok(seen.authorization or ""):
            reply = Reply.error(401, "UNAUTHORIZED", "authentication required")
            if self.auth.challenge_body is not None:
                reply = Reply(401, {"Content-Type": "application/json"}, self.auth.challenge_body)
            reply.headers["WWW-Authenticate"] = self.auth.challenge(self, seen)
            return reply
        if route is None:
            if seen.path == "/v2/":
                return Reply.json({})
            kind = "MANIFEST_UNKNOWN" if "/manifests/" in seen.path else "BLOB_UNKNOWN" if "/blobs/" in seen.path \
                else "NOT_FOUND"
            return Reply.error(404, kind)
        return route(seen) if callable(route) else route


def _handler_for(server: HostileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return bytes(out[:MiB])
                    out += self.rfile.read(size)
                    self.rfile.readline()
                    del out[MiB:]  # keep at most 1 MiB of a request body
            n = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(n) if n else b""
            return data[:MiB]

        def _dispatch(self):
            split = urllib.parse.urlsplit(self.path)
            seen = Seen(self.command, split.path, urllib.parse.parse_qs(split.query),
                        {k.lower(): v for k, v in self.headers.items()}, self._read_body(), server.port)
            with server._lock:
                server.requests.append(seen)
            reply = server._answer(seen)
            self.send_response(reply.status)
            streamed = callable(reply.body)
            length = reply.length if reply.length is not None else (None if streamed else len(reply.body))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if length is not None and length >= 0:
                self.send_header("Content-Length", str(length))
            elif length is None:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            try:
                self.end_headers()
                if self.command == "HEAD" or reply.status in (204, 304):
                    return
                chunks = reply.body() if streamed else [reply.body]
                for chunk in chunks:
                    if reply.chunk_delay:
                        time.sleep(reply.chunk_delay)
                    if not chunk:
                        continue
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if length is None else chunk)
                    with server._lock:
                        server.sent += len(chunk)
                if length is None:
                    self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                with server._lock:
                    server.aborted += 1
                self.close_connection = True

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    return Handler


def guard_connections(monkeypatch) -> list[tuple]:
    """Record every outgoing TCP connect made through socket.create_connection (httpcore's way in)
    and refuse, before any packet, one that is not to a loopback address literal.

    The importer connects only to addresses it checked, never by name: a connect by name means a
    second DNS lookup (a rebinding window) and is refused too. Returns the live list of addresses.
    """
    real = socket.create_connection
    attempts: list[tuple] = []

    def create_connection(address, *args, **kwargs):
        attempts.append(tuple(address[:2]))
        try:
            ip = ipaddress.ip_address(str(address[0]).split("%")[0])
        except ValueError:
            raise OSError(f"test guard: connect by name {address[0]!r}, not to a checked address") from None
        mapped = getattr(ip, "ipv4_mapped", None)
        if not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
            raise OSError(f"test guard: refusing a connection to non-loopback {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempts
