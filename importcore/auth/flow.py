"""The registry auth flow as an httpx.Auth generator (the shape of httpx's DigestAuth).

Send; on 401 read the challenge; Basic -> credentials; Bearer -> the token endpoint
(docker distribution docs/spec/auth/token.md: GET with Basic, or the OAuth2 POST with a
refresh/identity token), cache the token per scope set, retry once. Later requests with the
same scopes carry the cached token up front, so a streamed body never meets a 401.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Protocol

import httpx

from ..net.bodies import MAX_JSON_BODY, send_capped
from ..values.errors import AuthError, HostNotAllowed, RegistryError, TransportError
from .challenge import Challenge, parse_challenges
from .credentials import Credential

__all__ = ["SCOPES", "RegistryAuth", "TokenProvider", "scopes_for"]

SCOPES = "importcore.scopes"  # request.extensions key: the scopes this request needs


def scopes_for(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


class TokenProvider(Protocol):
    """Another source of bearer tokens than the realm (auth.acr.AcrTokenProvider: ACR's Entra exchange)."""

    def __call__(self, challenge: Challenge, scopes: Sequence[str]) -> tuple[str, float]:
        """A token for `scopes` and how many seconds it may be used."""

    def forget(self, scopes: Sequence[str]) -> None:
        """Drop a cached token the registry refused."""


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class RegistryAuth(httpx.Auth):
    """Auth for one registry; shared by all threads of an import (token cache behind a lock)."""

    def __init__(self, registry: str, credential: Credential | None, *, http: httpx.Client,
                 plain_http: bool = False, clock: Callable[[], float] = time.monotonic,
                 token_provider: TokenProvider | None = None) -> None:
        self.registry = registry
        self._plain_http = plain_http  # an operator-listed http registry may have an http realm
        self.credential = credential
        self._http = http
        self._clock = clock
        self._lock = threading.Lock()
        self._basic = False
        self._bearer: Challenge | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        # Another source of bearer tokens, e.g. auth.acr.AcrTokenProvider (ACR's Entra ID exchange):
        # (challenge, scopes) -> (token, seconds it may be used); replaces the realm request.
        self.token_provider = token_provider
        self.token_requests = 0  # how many times the token endpoint was asked (tests, bench)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scopes = tuple(sorted(set(request.extensions.get(SCOPES, ()))))
        sent = self._apply(request, scopes)
        response = yield request
        if response.status_code != 401:
            return
        challenges = parse_challenges(response.headers.get("www-authenticate"))
        if not self._learn(challenges, scopes, stale=sent):
            return
        if self._apply(request, scopes) is None:
            return
        yield request

    def _apply(self, request: httpx.Request, scopes: tuple[str, ...]) -> str | None:
        header = None
        if self._bearer is not None:
            cached = self._tokens.get(scopes)
            if cached and cached[1] > self._clock():
                header = f"Bearer {cached[0]}"
        elif self._basic and self.credential and self.credential.username:
            header = _basic(self.credential.username, self.credential.password or "")
        if header:
            request.headers["Authorization"] = header
        return header

    def _learn(self, challenges: list[Challenge], scopes: tuple[str, ...], *, stale: str | None) -> bool:
        by_scheme = {c.scheme: c for c in challenges}
        if "bearer" in by_scheme and by_scheme["bearer"].realm:
            self._bearer = by_scheme["bearer"]
            with self._lock:
                cached = self._tokens.get(scopes)
                if cached and f"Bearer {cached[0]}" != stale and cached[1] > self._clock():
                    return True  # another thread fetched a fresh one meanwhile
                if stale and self.token_provider is not None:
                    self.token_provider.forget(scopes)  # refused: a role may have changed since it was issued
                self._tokens[scopes] = self._fetch_token(self._bearer, scopes)
            return True
        if "basic" in by_scheme and not self._basic and self.credential and self.credential.username:
            self._basic = True
            return True
        return False

    def _fetch_token(self, challenge: Challenge, scopes: Iterable[str]) -> tuple[str, float]:
        """A bearer token for `scopes` and the clock time to stop using it."""
        realm = _realm(challenge, self.registry)
        scopes = list(scopes) or [s for s in challenge.params.get("scope", "").split(" ") if s]
        self.token_requests += 1
        if self.token_provider is not None:
            token, valid_for = self.token_provider(challenge, scopes)
            return token, self._clock() + valid_for
        if self.credential and self.credential.registry_token:
            return self.credential.registry_token, self._clock() + 3600
        where = f"token service {realm.host} for {self.registry}"
        body, response = self._ask(self._token_request(realm, challenge, scopes, where), where)
        token, expires_in = _token_from(body, response, where, self.credential)
        # Renew a little before the registry would start answering 401.
        return token, self._clock() + expires_in - min(30.0, expires_in / 4)

    def _token_request(self, realm: httpx.URL, challenge: Challenge, scopes: list[str], where: str) -> httpx.Request:
        """The token spec's GET (Basic credentials, or anonymous), or the OAuth2 refresh-token POST."""
        service = challenge.params.get("service")
        cred = self.credential
        if cred and cred.identity_token:
            # OAuth2 refresh-token grant, as docker does with an identitytoken
            form = ({"service": service} if service is not None else {}) | {
                "scope": " ".join(scopes), "grant_type": "refresh_token", "refresh_token": cred.identity_token,
                "client_id": "registry-importer"}
            return self._http.build_request("POST", realm, data=form)
        headers = {}
        if cred and cred.username:
            if realm.scheme != "https" and not self._plain_http:
                raise AuthError(f"{where}: refusing to send credentials to a plain-http realm")
            headers["Authorization"] = _basic(cred.username, cred.password or "")
        params = ([("service", service)] if service is not None else []) + [("scope", s) for s in scopes]
        return self._http.build_request("GET", realm.copy_with(params=params), headers=headers)

    def _ask(self, request: httpx.Request, where: str) -> tuple[bytes | None, httpx.Response]:
        """Send a token request; its failures name the token service."""
        try:
            # Streamed and read only up to the cap: the realm is whatever the registry's challenge
            # says, and an endless body must not be buffered first.
            return send_capped(self._http, request, MAX_JSON_BODY)
        except HostNotAllowed as exc:
            # The realm comes from the registry's challenge: name it as the thing refused.
            raise HostNotAllowed(f"{where}: the token realm is not allowed: {exc.message}",
                                 target=exc.target) from None
        except TransportError as exc:  # from the connect-time policy: the realm does not resolve
            raise TransportError(f"{where}: {exc.message}", target=exc.target) from None
        except httpx.HTTPError as exc:
            raise TransportError(f"{where}: {exc.__class__.__name__}") from None


def _realm(challenge: Challenge, registry: str) -> httpx.URL:
    """The challenge's token realm, if it is an http(s) URL with a host."""
    try:
        realm = httpx.URL(challenge.realm or "")
    except httpx.InvalidURL:  # e.g. realm="http://0177.0.0.1/": the challenge is the registry's to write
        realm = httpx.URL("")
    if realm.scheme not in ("http", "https") or not realm.host:
        raise AuthError(f"{registry} sent an unusable token realm")
    return realm


def _token_from(body: bytes | None, response: httpx.Response, where: str,
                cred: Credential | None) -> tuple[str, float]:
    """(token, seconds it is valid) from a token service's answer (token spec: token or access_token,
    expires_in defaulting to 60)."""
    if response.status_code in (401, 403):
        hint = ("the identity token was refused" if cred and cred.identity_token
                else "the username or password is wrong" if cred else "anonymous access is not allowed")
        raise AuthError(f"{where} refused the credentials ({response.status_code}): {hint}",
                        status=response.status_code, codes=("UNAUTHORIZED",))
    if response.status_code != 200:
        raise RegistryError(f"{where} answered {response.status_code}", status=response.status_code)
    if body is None:
        raise AuthError(f"{where} answered with more than {MAX_JSON_BODY} bytes, too long for a token")
    try:
        data = json.loads(body)
        token = data.get("token") or data.get("access_token")
        expires_in = float(data.get("expires_in") or 60)
    except (ValueError, AttributeError, TypeError):
        raise AuthError(f"{where} answered with an unreadable token") from None
    if not isinstance(token, str) or not token:
        raise AuthError(f"{where} answered without a token")
    return token, expires_in
