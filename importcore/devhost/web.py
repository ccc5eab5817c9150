"""HTTP front end: route templates, methods, function keys, and the host's admin API."""
from __future__ import annotations

import hmac
import json
import logging
import re
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
from azure.functions.http import HttpRequest  # the concrete class the Python worker builds

from .functions import FunctionSpec

log = logging.getLogger("importcore.devhost")

MAX_BODY = 100 * 1024 * 1024  # the host's default maxRequestBodySize
_TOKEN = re.compile(r"\{([^{}]+)\}")
_CONSTRAINTS = {"int": r"-?\d+", "long": r"-?\d+", "alpha": r"[A-Za-z]+", "bool": r"(?i:true|false)",
                "guid": r"[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}"}


@dataclass(frozen=True)
class Route:
    """A compiled httpTrigger route template."""

    spec: FunctionSpec
    pattern: re.Pattern[str]
    params: tuple[str, ...]
    defaults: dict[str, str]
    methods: frozenset[str] | None
    auth_level: str
    rank: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        """Route params (defaults filled in) when the path below the route prefix matches."""
        found = self.pattern.match("/" + path.strip("/"))
        if not found:
            return None
        values = {name: unquote(v) for name, v in zip(self.params, found.groups()) if v is not None}
        return {**self.defaults, **values}


def compile_route(spec: FunctionSpec) -> Route:
    """Compile ASP.NET-style templates: {id}, {id?}, {id:int}, {id=default}, {*rest}."""
    template = str(spec.trigger.get("route") or spec.name).strip("/")
    regex, params, defaults, rank = "", [], {}, []
    for segment in template.split("/") if template else []:
        whole = _TOKEN.fullmatch(segment)
        if whole and (whole.group(1).startswith("*") or whole.group(1).endswith("?") or "=" in whole.group(1)):
            name, default, catch_all = _param(whole.group(1))
            params.append(name)
            if default is not None:
                defaults[name] = default
            regex += r"(?:/(.*))?" if catch_all else r"(?:/([^/]+))?"
            rank.append(4 if catch_all else 3)
            continue
        part, last = "/", 0
        for token in _TOKEN.finditer(segment):
            name, constraint = (token.group(1).split(":", 1) + [""])[:2]
            part += re.escape(segment[last:token.start()]) + f"({_CONSTRAINTS.get(constraint.lower(), '[^/]+?')})"
            params.append(name)
            last = token.end()
            rank.append(1 if constraint else 2)
        regex += part + re.escape(segment[last:])
        if last == 0:
            rank.append(0)
    methods = spec.trigger.get("methods")
    return Route(
        spec=spec, pattern=re.compile(f"^{regex}/?$", re.IGNORECASE), params=tuple(params), defaults=defaults,
        methods=frozenset(m.upper() for m in methods) if methods else None,
        auth_level=str(spec.trigger.get("authLevel", "FUNCTION")).lower(), rank=tuple(rank))


def _param(token: str) -> tuple[str, str | None, bool]:
    catch_all = token.startswith("*")
    token = token.lstrip("*").rstrip("?")
    name, _, default = token.partition("=")
    return name.split(":", 1)[0], (default or None), catch_all


class Router:
    """Finds the function for a request path and method, preferring literal segments like ASP.NET."""

    def __init__(self, specs: Iterable[FunctionSpec], prefix: str) -> None:
        """Compile every HTTP function's route."""
        self.prefix = prefix
        self.routes = sorted((compile_route(s) for s in specs if s.kind == "http"), key=lambda r: r.rank)

    def find(self, path: str, method: str) -> tuple[Route | None, dict[str, str], set[str]]:
        """(route, params, allowed-methods); route None with allowed non-empty means 405."""
        prefix = f"/{self.prefix}" if self.prefix else ""
        if prefix and not (path.lower() == prefix.lower() or path.lower().startswith(prefix.lower() + "/")):
            return None, {}, set()
        rest, allowed = path[len(prefix):], set[str]()
        for route in self.routes:
            params = route.match(rest)
            if params is None:
                continue
            if route.methods is None or method in route.methods:
                return route, params, set()
            allowed |= route.methods
        return None, {}, allowed


class Handler(BaseHTTPRequestHandler):
    """One request: admin API or a function; the server carries the DevHost as `devhost`."""

    protocol_version = "HTTP/1.1"
    server_version = "importcore-devhost"
    server: _Server  # the server that made this handler (make_server's)

    def _dispatch(self) -> None:
        host = self.server.devhost
        url = urlsplit(self.path)
        path = url.path  # route values are unquoted after matching, so %2F stays inside one segment
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            body = self._read_body()
        except _TooLarge as exc:
            self.close_connection = True  # the rest of the body is unread
            return self._json(413, "PayloadTooLarge", str(exc))
        except ValueError as exc:
            # Where this body ends is unknown, so whatever follows it cannot be taken for the next
            # request (that would let a body smuggle one in): answer, then close the connection.
            self.close_connection = True
            return self._json(400, "BadRequest", f"unreadable request body: {exc}")
        if path.rstrip("/") == "" and self.command in ("GET", "HEAD"):
            return self._send(200, {"content-type": "text/plain; charset=utf-8"}, b"Your devhost is running.\n")
        if path.startswith("/admin/"):
            return self._admin(host, path, query, body)
        route, params, allowed = host.router.find(path, self.command)
        if route is None:
            if allowed:
                return self._json(405, "MethodNotAllowed", f"{self.command} is not allowed here",
                                  {"allow": ", ".join(sorted(allowed))})
            return self._json(404, "NotFound", f"no function matches {self.command} {url.path}")
        if route.auth_level != "anonymous" and not self._authorized(host.function_key, query):
            return self._json(401, "Unauthorized", "a function key is required (x-functions-key header or code)")
        request = HttpRequest(
            self.command, f"http://{self.headers.get('host', host.authority)}{self.path}",
            headers=self._headers(), params=query, route_params=params, body_type="bytes", body=body)
        try:
            with host.tracked():
                result = host.invoker.invoke(route.spec, request, reason="This function was programmatically called via the host APIs.")
        except Exception:  # noqa: BLE001 - logged by the invoker; never leak a traceback to the caller
            return self._json(500, "InternalServerError", f"function '{route.spec.name}' failed; see the host log")
        self._write_result(result)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _admin(self, host: Any, path: str, query: dict[str, str], body: bytes) -> None:
        if not self._authorized(host.function_key, query):
            return self._json(401, "Unauthorized", "the admin API needs the host key")
        if path.rstrip("/") == "/admin/host/status" and self.command == "GET":
            return self._send_json(200, {"state": "Running", "version": "devhost"})
        found = re.fullmatch(r"/admin/functions/([^/]+)/?", path)
        if not found or self.command != "POST":
            return self._json(404, "NotFound", f"no admin endpoint {self.command} {path}")
        spec = host.function(found.group(1))
        if spec is None or spec.kind == "http":
            return self._json(404, "NotFound", f"no non-HTTP function named '{found.group(1)}'")
        try:
            payload = json.loads(body or b"{}")
            text = payload.get("input") if isinstance(payload, dict) else None
        except ValueError:
            return self._json(400, "BadRequest", 'the body must be JSON like {"input": "..."}')
        host.run_in_background(spec.name, None if text is None else str(text))
        self._send(202, {}, b"")

    def _authorized(self, key: str | None, query: dict[str, str]) -> bool:
        # Like Core Tools locally: with no key configured, every level is open.
        if not key:
            return True
        given = self.headers.get("x-functions-key") or query.get("code") or ""
        return hmac.compare_digest(given.encode(), key.encode())

    def _read_body(self) -> bytes:
        """The body as its framing says; ValueError for any framing that cannot be trusted."""
        encodings = self.headers.get_all("transfer-encoding") or []
        lengths = {v.strip() for v in self.headers.get_all("content-length") or []}
        if encodings:
            if lengths:
                raise ValueError("both Transfer-Encoding and Content-Length")
            if ",".join(encodings).strip().lower() != "chunked":
                raise ValueError(f"unsupported Transfer-Encoding {','.join(encodings)[:40]!r}")
            return self._read_chunked()
        if not lengths:
            return b""
        (length_text,) = lengths if len(lengths) == 1 else (None,)
        if length_text is None or not (length_text.isascii() and length_text.isdigit()):
            raise ValueError("Content-Length is not one non-negative number")
        length = int(length_text)
        if length > MAX_BODY:
            raise _TooLarge("request body too large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise ValueError("the body ended before its Content-Length")
        return body

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        for _ in range(MAX_BODY):  # each chunk holds at least one byte: bounded by MAX_BODY
            line = self.rfile.readline(1024).split(b";")[0].strip()
            if not line or line.strip(b"0123456789abcdefABCDEF"):
                raise ValueError("a chunk size is not hexadecimal")
            size = int(line, 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                raise _TooLarge("request body too large")
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3) != b"\r\n":
                raise ValueError("a chunk is shorter than its size or not followed by CRLF")
            chunks.append(chunk)
        for _ in range(100):  # trailer fields, up to the empty line
            line = self.rfile.readline(8192)
            if line in (b"\r\n", b"\n"):
                return b"".join(chunks)
            if not line:
                break
        raise ValueError("the chunked body does not end with an empty line")

    def _headers(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        return merged

    def _write_result(self, result: Any) -> None:
        if result is None:
            return self._send(204, {}, b"")
        if isinstance(result, str):
            return self._send(200, {"content-type": "text/plain; charset=utf-8"}, result.encode())
        if not isinstance(result, func.HttpResponse):
            log.error("HTTP function returned %s, not an HttpResponse", type(result).__name__)
            return self._json(500, "InternalServerError", "the function returned no HttpResponse")
        headers = {k.lower(): v for k, v in result.headers.items()}
        if "content-type" not in headers:
            # Same rule as azure.functions' HttpResponseConverter.
            mimetype = result.mimetype
            headers["content-type"] = f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype
        self._send(result.status_code, headers, result.get_body())

    def _json(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"error": {"code": code, "message": message}}, headers)

    def _send_json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, {**(headers or {}), "content-type": "application/json"}, json.dumps(document).encode())

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(name, value)
        if status not in (204, 304):
            self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default access log: its request line carries query strings (and `code` keys)."""


class _TooLarge(ValueError):
    """The request body exceeds MAX_BODY.

    Private and outside values/errors.py on purpose: _read_body raises it and _dispatch answers 413
    for it, in this module; it never reaches a function or a caller."""


class _Server(ThreadingHTTPServer):
    """Reports handler errors (mostly clients hanging up) to the log instead of stderr."""

    daemon_threads = True
    devhost: Any = None  # the DevHost whose functions the handlers call (set by make_server)
    # socketserver's default listen backlog is 5: a burst of new connections overflowed it and
    # clients were reset. Let them wait in the kernel's queue instead (capped at net.core.somaxconn).
    request_queue_size = socket.SOMAXCONN

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A dropped connection is the client's business (DEBUG); anything else is a devhost bug (ERROR)."""
        dropped = isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError))
        log.log(logging.DEBUG if dropped else logging.ERROR, "HTTP request from %s failed", client_address[0],
                exc_info=True)


def make_server(devhost: Any, bind: str, port: int) -> ThreadingHTTPServer:
    """A threading server whose handlers reach the DevHost as server.devhost."""
    server = _Server((bind, port), Handler)
    server.devhost = devhost
    return server

