"""ACR's Entra ID token exchange as a token provider for RegistryAuth.

Azure Container Registry does not take an Entra ID token as a registry token. The client trades
it in two steps (Azure/acr docs/AAD-OAuth.md; azure-containerregistry's _exchange_client.py):

    POST https://<registry>/oauth2/exchange   grant_type=access_token, service, tenant, access_token
         -> {"refresh_token": <JWT, ~3 h>}
    POST https://<registry>/oauth2/token      grant_type=refresh_token, service, scope, refresh_token
         -> {"access_token": <JWT, ~75 min>}

Neither answer carries expires_in, so the lifetime is the JWT's `exp` (read, never verified: the
registry verifies it). Both tokens are cached and renewed a little before they expire; one
provider serves every thread of every import into the same registry.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import httpx

from ..net.bodies import MAX_JSON_BODY, send_capped
from ..values.arm import ACR_SUFFIXES
from ..values.errors import AuthError, RegistryError, TransportError
from .challenge import Challenge

__all__ = ["ACR_AUDIENCE", "AccessToken", "AcrTokenProvider", "TokenCredential", "is_acr_login_server",
           "is_entra_token", "jwt_claims", "jwt_expiry"]

# ACR's own audience: accepted even where a registry refuses ARM-audience tokens
# (azureADAuthenticationAsArmPolicy disabled, learn.microsoft.com container-registry-disable-authentication-as-arm).
ACR_AUDIENCE = "https://containerregistry.azure.net/.default"
# Issuers of Entra ID access tokens (v1 and v2 endpoints; public, China, US Government clouds).
_ENTRA_ISSUERS = ("https://sts.windows.net/", "https://login.microsoftonline.com/", "https://sts.chinacloudapi.cn/",
                  "https://login.chinacloudapi.cn/", "https://login.microsoftonline.us/")
_FALLBACK_LIFETIME = 300.0  # a token whose exp we cannot read is trusted this long
_MAX_MARGIN = 300.0  # renew at most this long before exp (and at most a quarter of the lifetime)


class AccessToken(NamedTuple):
    """Shape of azure.core.credentials.AccessToken: the token and its expiry in epoch seconds."""

    token: str
    expires_on: int


class TokenCredential(Protocol):
    """The azure-identity interface (DefaultAzureCredential, ManagedIdentityCredential, ...)."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken: ...


def is_acr_login_server(registry: str) -> bool:
    """Whether `registry` (host[:port]) is an ACR login server, i.e. speaks the Entra exchange."""
    host = registry.lower().split(":")[0]
    return host.endswith(ACR_SUFFIXES) and len(host) > len(".azurecr.io")


def is_entra_token(token: str) -> bool:
    """Whether a password is an Entra ID access token (az acr import's cross-tenant form), judged
    by its issuer; an ACR refresh token (`az acr login --expose-token`) is not one."""
    issuer = jwt_claims(token).get("iss")
    return isinstance(issuer, str) and issuer.startswith(_ENTRA_ISSUERS)


def jwt_claims(token: str) -> dict:
    """The payload of a JWT (base64url, RFC 7515 section 2), unverified; {} if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (binascii.Error, UnicodeError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim (epoch seconds) of a JWT, or None."""
    exp = jwt_claims(token).get("exp")
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


class _Cached(NamedTuple):
    token: str
    renew_at: float  # wall clock: hand it out until then
    expires_at: float


class AcrTokenProvider:
    """Entra token -> ACR refresh token -> ACR access token per scope set, cached and thread-safe.

    Call it as RegistryAuth's token provider: ``provider(challenge, scopes) -> (token, seconds_valid)``.
    `challenge` is the registry's ``Bearer realm=".../oauth2/token",service="..."``; the exchange
    endpoint is the realm's origin + /oauth2/exchange.
    """

    def __init__(self, credential: TokenCredential, *, registry: str, http: httpx.Client,
                 audience: str = ACR_AUDIENCE, tenant: str | None = None, plain_http: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self._credential = credential
        self._http = http
        self._audience = audience
        self._tenant = tenant
        self._plain_http = plain_http  # only for operator-listed http registries (tests)
        self._clock = clock
        self._lock = threading.Lock()
        self._refresh: dict[str, _Cached] = {}  # service -> ACR refresh token
        self._access: dict[tuple[str, tuple[str, ...]], _Cached] = {}  # (service, scopes) -> access token
        self.exchanges = 0  # /oauth2/exchange calls (tests, bench)
        self.token_requests = 0  # /oauth2/token calls

    def __call__(self, challenge: Challenge, scopes: Sequence[str]) -> tuple[str, float]:
        """An access token for `scopes` and how many seconds it may still be used."""
        realm = self._realm(challenge)
        service = challenge.params.get("service") or self.registry
        key = (service, tuple(sorted(set(scopes))))
        with self._lock:
            cached = self._access.get(key)
            now = self._clock()
            if cached is None or now >= cached.renew_at:
                cached = self._access[key] = self._access_token(realm, service, key[1])
                now = self._clock()
            return cached.token, max(0.0, cached.renew_at - now)

    def forget(self, scopes: Sequence[str]) -> None:
        """Drop the cached access token for `scopes` (the registry refused it: e.g. a role granted
        after it was issued, which ACR only puts into new tokens). The refresh token is kept."""
        wanted = tuple(sorted(set(scopes)))
        with self._lock:
            for key in [k for k in self._access if k[1] == wanted]:
                del self._access[key]

    # -- the two exchanges -------------------------------------------------------------------

    def _realm(self, challenge: Challenge) -> httpx.URL:
        realm = httpx.URL(challenge.realm or "")
        if realm.scheme not in ("http", "https") or not realm.host:
            raise AuthError(f"{self.registry} sent an unusable token realm")
        if realm.scheme != "https" and not self._plain_http:
            raise AuthError(f"{self.registry}: refusing to send an Entra ID token to a plain-http realm")
        # The Entra token is worth more than any one registry: it goes to the registry's own host only
        # (ACR's realm is https://<login server>/oauth2/token), never to a host a challenge names.
        if realm.host.lower() != self.registry.lower().split(":")[0]:
            raise AuthError(f"{self.registry}: its token realm is on another host ({realm.host}); "
                            "not sending an Entra ID token there")
        return realm

    def _access_token(self, realm: httpx.URL, service: str, scopes: tuple[str, ...]) -> _Cached:
        refresh = self._refresh_token(realm, service, renew=False)
        status, data = self._grant(realm, service, scopes, refresh.token)
        if status == 401:  # the refresh token was revoked or expired early: one new exchange
            refresh = self._refresh_token(realm, service, renew=True)
            status, data = self._grant(realm, service, scopes, refresh.token)
        return self._cache_entry(self._token_from(status, data, "access_token", "/oauth2/token"))

    def _grant(self, realm: httpx.URL, service: str, scopes: tuple[str, ...], refresh: str) -> tuple[int, object]:
        form = {"grant_type": "refresh_token", "service": service, "scope": " ".join(scopes),
                "refresh_token": refresh}
        self.token_requests += 1
        return self._post(realm.copy_with(query=None), form, "/oauth2/token")

    def _refresh_token(self, realm: httpx.URL, service: str, *, renew: bool) -> _Cached:
        cached = self._refresh.get(service)
        if cached is not None and not renew and self._clock() < cached.renew_at:
            return cached
        entra = self._credential.get_token(self._audience)
        form = {"grant_type": "access_token", "service": service, "access_token": entra.token}
        tenant = self._tenant or jwt_claims(entra.token).get("tid")
        if isinstance(tenant, str) and tenant:
            form["tenant"] = tenant
        self.exchanges += 1
        status, data = self._post(realm.copy_with(path="/oauth2/exchange", query=None), form, "/oauth2/exchange")
        token = self._token_from(status, data, "refresh_token", "/oauth2/exchange")
        cached = self._refresh[service] = self._cache_entry(token)
        return cached

    def _cache_entry(self, token: str) -> _Cached:
        now = self._clock()
        expires_at = jwt_expiry(token) or now + _FALLBACK_LIFETIME
        lifetime = max(0.0, expires_at - now)
        return _Cached(token, expires_at - min(_MAX_MARGIN, lifetime / 4), expires_at)

    def _post(self, url: httpx.URL, form: dict[str, str], what: str) -> tuple[int, object]:
        where = f"{self.registry} {what}"
        try:
            body, response = send_capped(self._http, self._http.build_request("POST", url, data=form), MAX_JSON_BODY)
        except httpx.HTTPError as exc:
            raise TransportError(f"{where}: {exc.__class__.__name__}") from None
        if body is None:
            raise AuthError(f"{where} answered with more than {MAX_JSON_BODY} bytes, too long for a token",
                            status=response.status_code)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        return response.status_code, data

    def _token_from(self, status: int, data: object, field: str, what: str) -> str:
        where = f"{self.registry} {what}"
        if status in (401, 403):
            hint = ("the Entra ID token was refused: is the identity in the registry's tenant, and does the "
                    "registry accept Entra ID (AAD) authentication?" if what == "/oauth2/exchange"
                    else "the ACR refresh token was refused")
            raise AuthError(f"{where} answered {status}: {hint}{_detail(data)}", status=status,
                            codes=("UNAUTHORIZED",))
        if status != 200:
            raise RegistryError(f"{where} answered {status}{_detail(data)}", status=status)
        token = data.get(field) if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"{where} answered without a {field}")
        return token


def _detail(data: object) -> str:
    """The error text of an ACR answer ({"errors":[{"message"}]} or OAuth2's error_description)."""
    if not isinstance(data, dict):
        return ""
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict) and errors[0].get("message"):
        return f" ({str(errors[0]['message'])[:200]})"
    if data.get("error_description") or data.get("error"):
        return f" ({str(data.get('error_description') or data.get('error'))[:200]})"
    return ""
