"""A Docker registry token server (the "realm" of `WWW-Authenticate: Bearer ...`), for tests.

Implements https://distribution.github.io/distribution/spec/auth/token/ and the OAuth2 variant
(spec/auth/oauth/) well enough for CNCF Distribution 2.8 and real clients (skopeo):

- ``GET  /token?service=S&scope=repository:R:pull,push[&scope=...][&offline_token=true]``
  with optional Basic auth. No auth = anonymous; a wrong password = 401.
- ``POST /token`` form: ``grant_type=password`` (username, password) or
  ``grant_type=refresh_token`` (refresh_token); ``scope`` is space separated.

Tokens are ES256 JWTs whose header carries ``x5c`` = [our self-signed cert]. Distribution 2.8
verifies x5c chains against ``rootcertbundle`` (the same cert, written to ``cert_path``); a
bare ``kid`` would have to be a libtrust key id, which x5c avoids.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Optional

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from .httpserver import serve_in_background, stop_server

# (user or None for anonymous, repository name) -> actions that user may have there.
Acl = Callable[[Optional[str], str], Iterable[str]]


def default_acl(user: Optional[str], repo: str) -> set[str]:
    """Anonymous may pull everything; any authenticated user may pull and push everything."""
    return {"pull"} if user is None else {"pull", "push"}


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """'repository:a/b:pull,push' -> ('repository', 'a/b', ['pull','push']); the name may hold ':'
    (e.g. a host:port prefix in 'repository(plugin)' forms), so split at the first and last colon."""
    if scope.count(":") < 2:
        return None
    typ, rest = scope.split(":", 1)
    name, actions = rest.rsplit(":", 1)
    return typ, name, [a for a in actions.split(",") if a]


class TokenServer:
    """Token server on a free 127.0.0.1 port. ``start()``/``stop()`` or use as a context manager.

    users:      {username: password} accepted for Basic auth and the password grant.
    acl:        callable (user|None, repo) -> actions; ``grant()`` overrides it per (user, repo).
    expires_in: token lifetime in seconds (mutable at runtime).
    allow_anonymous: False makes requests without credentials 401.
    requests:   every request as a dict(method, path, user, scopes, grant_type, status, time).
    """

    def __init__(self, workdir: Path, users: dict[str, str] | None = None, *, acl: Acl = default_acl,
                 expires_in: int = 300, service: str = "test-registry", issuer: str = "test-token-issuer",
                 allow_anonymous: bool = True):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.users = dict(users or {})
        self.acl = acl
        self.grants: dict[tuple[Optional[str], str], set[str]] = {}
        self.expires_in = expires_in
        self.service = service
        self.issuer = issuer
        self.allow_anonymous = allow_anonymous
        self.requests: list[dict] = []
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self._lock = threading.Lock()
        self._key, self._cert = _make_key_and_cert()
        self.cert_path = self.workdir / "token-root.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.port: int | None = None
        self._httpd: ThreadingHTTPServer | None = None

    # ----- configuration used by tests -----
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def grant(self, user: Optional[str], repo: str, actions: Iterable[str]) -> None:
        """Override the ACL for (user, repo); ``grant(u, r, [])`` denies everything there."""
        with self._lock:
            self.grants[(user, repo)] = set(actions)

    def allowed(self, user: Optional[str], repo: str) -> set[str]:
        with self._lock:
            if (user, repo) in self.grants:
                return set(self.grants[(user, repo)])
        return set(self.acl(user, repo))

    def requests_for(self, repo: str) -> list[dict]:
        """Recorded token requests whose scopes name ``repo`` (to count token fetches per test)."""
        with self._lock:
            return [r for r in self.requests if any(s[1] == repo for s in r["scopes"])]

    def issue(self, user: Optional[str], scopes: list[str], expires_in: int | None = None) -> str:
        """A signed token for user with the scopes the ACL allows (tests may call it directly)."""
        now = int(time.time())
        access = []
        for raw in scopes:
            parsed = parse_scope(raw)
            if not parsed:
                continue
            typ, name, wanted = parsed
            if typ != "repository":
                continue  # registry:catalog:* etc. are never granted here
            ok = self.allowed(user, name)
            got = [a for a in wanted if a in ok or ("*" in ok)]
            access.append({"type": typ, "name": name, "actions": got})
        claims = {
            "iss": self.issuer, "sub": user or "", "aud": self.service,
            "exp": now + (self.expires_in if expires_in is None else expires_in),
            # nbf/iat a little in the past: Distribution allows 60 s leeway, clocks are the same here.
            "nbf": now - 1, "iat": now, "jti": secrets.token_hex(12), "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": self._x5c})

    # ----- lifecycle -----
    def start(self) -> "TokenServer":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._make_handler())
        self.port = serve_in_background(self._httpd, type(self).__name__)
        return self

    def _make_handler(self):
        return _handler_for(self)

    def stop(self) -> None:
        stop_server(self._httpd)
        self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ----- request handling (called from the handler thread) -----
    def _record(self, **kw) -> None:
        with self._lock:
            self.requests.append(dict(kw, time=time.time()))

    def _check_password(self, user: str, password: str) -> bool:
        return user in self.users and secrets.compare_digest(self.users[user], password)

    def _respond_token(self, user, scopes, offline: bool) -> dict:
        token = self.issue(user, scopes)
        body = {"token": token, "access_token": token, "expires_in": self.expires_in,
                "issued_at": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")}
        if offline and user is not None:
            rt = secrets.token_urlsafe(24)
            with self._lock:
                self.refresh_tokens[rt] = user
            body["refresh_token"] = rt
        return body


def _make_key_and_cert():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token issuer")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _handler_for(server: TokenServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="token"')
            self.end_headers()
            self.wfile.write(data)

        def _basic(self) -> tuple[str, str] | None:
            h = self.headers.get("Authorization", "")
            if not h.lower().startswith("basic "):
                return None
            try:
                user, _, pw = base64.b64decode(h[6:].strip()).decode().partition(":")
            except Exception:
                return ("", "")
            return user, pw

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(u.query)
            scopes = [s for v in q.get("scope", []) for s in v.split(" ") if s]
            rec = dict(method="GET", path=u.path, scopes=[parse_scope(s) or (s, "", []) for s in scopes],
                       grant_type=None)
            if u.path != "/token":
                server._record(user=None, status=404, **rec)
                return self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
            creds = self._basic()
            if creds is not None and not server._check_password(*creds):
                server._record(user=creds[0], status=401, **rec)
                return self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]})
            user = creds[0] if creds else None
            if user is None and not server.allow_anonymous:
                server._record(user=None, status=401, **rec)
                return self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
            offline = q.get("offline_token", ["false"])[0].lower() == "true"
            server._record(user=user, status=200, **rec)
            self._send(200, server._respond_token(user, scopes, offline))

        def do_POST(self):
            u = urllib.parse.urlsplit(self.path)
            n = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(n).decode())
            f = lambda k: (form.get(k) or [""])[0]  # noqa: E731
            scopes = [s for s in f("scope").split(" ") if s]
            grant = f("grant_type")
            rec = dict(method="POST", path=u.path, scopes=[parse_scope(s) or (s, "", []) for s in scopes],
                       grant_type=grant)
            if u.path != "/token":
                server._record(user=None, status=404, **rec)
                return self._send(404, {"error": "not_found"})
            if grant == "password":
                user = f("username")
                if not server._check_password(user, f("password")):
                    server._record(user=user, status=401, **rec)
                    return self._send(401, {"error": "invalid_grant", "error_description": "bad credentials"})
            elif grant == "refresh_token":
                with server._lock:
                    user = server.refresh_tokens.get(f("refresh_token"))
                if user is None:
                    server._record(user=None, status=401, **rec)
                    return self._send(401, {"error": "invalid_grant", "error_description": "unknown refresh token"})
            else:
                server._record(user=None, status=400, **rec)
                return self._send(400, {"error": "unsupported_grant_type"})
            server._record(user=user, status=200, **rec)
            # The password grant always returns a refresh token (as Docker's auth server does);
            # a refresh grant returns the same one again.
            body = server._respond_token(user, scopes, offline=(grant == "password"))
            if grant == "refresh_token":
                body["refresh_token"] = f("refresh_token")
            body["scope"] = " ".join(scopes)
            self._send(200, body)

    return Handler
