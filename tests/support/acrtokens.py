"""A stand-in for ACR's token service: /oauth2/exchange and /oauth2/token, for tests.

ACR trades an Entra ID access token for a refresh token, and that for registry access tokens
(Azure/acr docs/AAD-OAuth.md). This server does the same with fake Entra tokens it minted itself
(``entra_token()``; unsigned JWTs with tid/oid/aud/exp, checked against what it handed out) and
signs its access tokens with TokenServer's key, so a real Distribution registry configured with
``auth: token`` (realm = ``realm`` here, rootcertbundle = ``cert_path``) accepts them.

- ``POST /oauth2/exchange`` form: grant_type=access_token, service, [tenant], access_token
  -> ``{"refresh_token": <JWT>}`` (no expires_in: clients read `exp`, as with ACR).
- ``POST /oauth2/token`` form: grant_type=refresh_token, service, scope (space separated),
  refresh_token -> ``{"access_token": <JWT>}``.
Errors answer 401 ``{"errors":[{"code":"UNAUTHORIZED","message":...}]}`` like ACR.
"""
from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from pathlib import Path
from typing import NamedTuple

from .images import Pusher
from .tokenserver import TokenServer, parse_scope
from .httpserver import JsonHandler

ACR_AUDIENCES = ("https://containerregistry.azure.net", "https://management.azure.com",
                 "https://management.core.windows.net/")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(claims: dict) -> str:
    """A JWT-shaped token (alg none): what a client may parse but never has to verify."""
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64url(json.dumps(claims).encode())}.sig"


class AcrTokenService(TokenServer):
    """TokenServer's signing and ACL, behind ACR's two OAuth2 endpoints.

    tenant:              the only tenant whose Entra tokens are accepted.
    refresh_expires_in:  lifetime of refresh tokens (ACR: 3 h); ``expires_in`` is the access tokens'.
    clock_offset:        seconds added to the lifetimes it issues, so a test moving its client's clock
                         forward still gets tokens that expire after that (the registry checks real time).
    exchanges / token_grants: the /oauth2/exchange and /oauth2/token requests (dicts), for counting.
    """

    def __init__(self, workdir: Path, *, service: str = "acr-standin.example", tenant: str = "tenant-a",
                 expires_in: int = 3600, refresh_expires_in: int = 10800):
        super().__init__(workdir, {}, service=service, issuer="Azure Container Registry", expires_in=expires_in,
                         allow_anonymous=False)
        self.tenant = tenant
        self.refresh_expires_in = refresh_expires_in
        self.clock_offset = 0.0
        self.entra_tokens: dict[str, str] = {}  # fake Entra token -> principal (oid)
        self.acr_refresh: dict[str, str] = {}  # refresh token -> principal
        self.exchanges: list[dict] = []
        self.token_grants: list[dict] = []  # (TokenServer.grants is its ACL override table)
        self._acr_lock = threading.Lock()

    @property
    def realm(self) -> str:
        return f"{self.url}/oauth2/token"

    def entra_token(self, principal: str, *, tenant: str | None = None, audience: str = ACR_AUDIENCES[0],
                    expires_in: int = 3600) -> str:
        """Mint an 'Entra ID' token for `principal` that this service will accept (if tenant matches)."""
        now = int(time.time())
        token = unsigned_jwt({"aud": audience, "iss": "https://sts.windows.net/fake/", "tid": tenant or self.tenant,
                              "oid": principal, "iat": now, "nbf": now, "exp": now + expires_in,
                              "jti": secrets.token_hex(8)})
        with self._acr_lock:
            self.entra_tokens[token] = principal
        return token

    def _make_handler(self):
        return _acr_handler(self)

    # ----- the two grants (called from handler threads); return (status, body) -----
    def _exchange(self, form: dict[str, str]) -> tuple[int, dict]:
        token = form.get("access_token", "")
        with self._acr_lock:
            principal = self.entra_tokens.get(token)
        claims = _claims(token)
        if form.get("grant_type") != "access_token":
            return 400, _error("UNSUPPORTED", "grant_type must be access_token")
        if form.get("service") != self.service:
            return 400, _error("INVALID_SERVICE", f"service {form.get('service')!r} is not this registry")
        if principal is None or claims.get("exp", 0) < time.time():
            return 401, _error("UNAUTHORIZED", "the AAD access token is invalid or expired")
        if claims.get("aud") not in ACR_AUDIENCES:
            return 401, _error("UNAUTHORIZED", f"audience {claims.get('aud')!r} is not accepted")
        if claims.get("tid") != self.tenant or form.get("tenant", self.tenant) != self.tenant:
            return 401, _error("UNAUTHORIZED", "the token's tenant is not the registry's tenant")
        refresh = self.issue(principal, [], int(self.refresh_expires_in + self.clock_offset))
        with self._acr_lock:
            self.acr_refresh[refresh] = principal
        return 200, {"refresh_token": refresh}

    def _token(self, form: dict[str, str]) -> tuple[int, dict]:
        if form.get("grant_type") != "refresh_token":
            return 400, _error("UNSUPPORTED", "grant_type must be refresh_token")
        if form.get("service") != self.service:
            return 400, _error("INVALID_SERVICE", f"service {form.get('service')!r} is not this registry")
        refresh = form.get("refresh_token", "")
        with self._acr_lock:
            principal = self.acr_refresh.get(refresh)
        if principal is None or _claims(refresh).get("exp", 0) < time.time():
            return 401, _error("UNAUTHORIZED", "the refresh token is invalid or expired")
        scopes = [s for s in form.get("scope", "").split(" ") if s]
        return 200, {"access_token": self.issue(principal, scopes, int(self.expires_in + self.clock_offset))}

    def revoke_refresh_tokens(self) -> None:
        with self._acr_lock:
            self.acr_refresh.clear()


class AccessToken(NamedTuple):
    """azure.core.credentials.AccessToken's shape."""

    token: str
    expires_on: int


class StaticCredential:
    """A fixed token behind azure-identity's get_token(*scopes) interface; records the scopes asked."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.calls.append(scopes)
        return AccessToken(self.token, int(_claims(self.token).get("exp") or time.time() + 3600))


class AcrPusher(Pusher):
    """Seeds a registry behind AcrTokenService with tokens it signs directly (it serves no GET realm)."""

    def __init__(self, registry, service: AcrTokenService, user: str = "seeder") -> None:
        super().__init__(registry)
        self.service = service
        self.user = user

    def _token(self, params):
        return self.service.issue(self.user, [params.get("scope", "")])


def _claims(token: str) -> dict:
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def _error(code: str, message: str) -> dict:
    return {"errors": [{"code": code, "message": message}]}


def _acr_handler(server: AcrTokenService):
    class Handler(JsonHandler):

        def do_GET(self):
            self._send(405, _error("UNSUPPORTED", "only the OAuth2 POST grants are served here"))

        def do_POST(self):
            path = urllib.parse.urlsplit(self.path).path
            n = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(n).decode()).items()}
            if path == "/oauth2/exchange":
                status, body = server._exchange(form)
                log = server.exchanges
            elif path == "/oauth2/token":
                status, body = server._token(form)
                log = server.token_grants
            else:
                return self._send(404, _error("NOT_FOUND", path))
            scopes = [parse_scope(s) or (s, "", []) for s in form.get("scope", "").split(" ") if s]
            with server._acr_lock:
                log.append({"status": status, "service": form.get("service"), "tenant": form.get("tenant"),
                            "scopes": scopes, "time": time.time()})
            self._send(status, body)

    return Handler
