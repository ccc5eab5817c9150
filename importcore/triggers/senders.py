"""Is this delivery really from the sender we configured? Each provider's own mechanism, all
comparisons constant-time (hmac.compare_digest over SHA-256 digests, so not even lengths leak).

| provider       | mechanism                                                                      |
|----------------|--------------------------------------------------------------------------------|
| `github`       | `X-Hub-Signature-256: sha256=HMAC-SHA256(secret, raw body)` (the webhook's secret) |
| `harbor`       | the webhook's "Auth Header": `Authorization: <secret>` (or `Bearer <secret>`)  |
| `acr`, `distribution` | a custom header configured on the webhook: `X-Webhook-Secret: <secret>` (or `Authorization`) |
| `dockerhub`    | no signature exists: a secret token in the URL path (`.../dockerhub/<token>`) or `?token=` |
| Event Grid     | `?token=<secret>` in the subscription's endpoint URL, or a `X-Webhook-Secret` delivery header |

Functions take headers/query as plain mappings and secrets as arguments; `verify_*` return None or
raise WebhookAuthError (answer 401, queue nothing). A provider without a configured secret is refused
(WebhookNotConfigured, also a WebhookAuthError): fail closed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from ..values.errors import UnknownProvider, UsageError, WebhookAuthError, WebhookNotConfigured
from ..values.settings import DEFAULT_SECRET_HEADER, SECRET_SETTINGS, Settings
from .events import header
from .webhooks import PROVIDERS

__all__ = [
    "DEFAULT_SECRET_HEADER",
    "TriggerSecrets",
    "github_signature_ok",
    "secret_matches",
    "verify_eventgrid",
    "verify_webhook",
]

TOKEN_PARAM = "token"
MIN_SECRET_LENGTH = 16
HEADER_SETTING = "IMPORT_WEBHOOK_SECRET_HEADER"


@dataclass(frozen=True, slots=True)
class TriggerSecrets:
    """The configured secret per sender (None = not accepted). repr never shows a secret."""

    github: str | None = None
    harbor: str | None = None
    acr: str | None = None
    distribution: str | None = None
    dockerhub: str | None = None
    eventgrid: str | None = None
    header_name: str = DEFAULT_SECRET_HEADER

    def __repr__(self) -> str:
        configured = [name for name in SECRET_SETTINGS if getattr(self, name)]
        return f"TriggerSecrets(configured={configured}, header_name={self.header_name!r})"

    __str__ = __repr__

    def for_provider(self, provider: str) -> str | None:
        return getattr(self, provider, None) if provider in SECRET_SETTINGS else None

    @classmethod
    def from_settings(cls, settings: Settings) -> TriggerSecrets:
        """IMPORT_WEBHOOK_SECRET_{GITHUB,HARBOR,ACR,DISTRIBUTION,DOCKERHUB}, IMPORT_EVENTGRID_SECRET,
        IMPORT_WEBHOOK_SECRET_HEADER (default X-Webhook-Secret), checked: a short secret or a header
        name that is none is refused (UsageError)."""
        for provider, secret in settings.webhook_secrets.items():
            if len(secret) < MIN_SECRET_LENGTH:
                raise UsageError(f"setting {SECRET_SETTINGS[provider]} is shorter than {MIN_SECRET_LENGTH} "
                                 "characters: use a long random value (e.g. openssl rand -hex 32)")
        header_name = settings.webhook_secret_header
        if not header_name.isascii() or not all(c.isalnum() or c in "-_" for c in header_name):
            raise UsageError(f"setting {HEADER_SETTING}={header_name[:40]!r} is not an HTTP header name")
        secrets = {provider: settings.webhook_secrets.get(provider) for provider in SECRET_SETTINGS}
        return cls(**secrets, header_name=header_name)


# -- primitives ----------------------------------------------------------------------------------

def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def secret_matches(presented: str | bytes | None, secret: str | bytes) -> bool:
    """Constant-time equality; hashing first makes even the length comparison constant."""
    if presented is None or not secret:
        return False
    return hmac.compare_digest(hashlib.sha256(_bytes(presented)).digest(), hashlib.sha256(_bytes(secret)).digest())


def github_signature_ok(body: bytes | str, signature: str | None, secret: str | bytes) -> bool:
    """GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`."""
    if not signature or not secret:
        return False
    expected = "sha256=" + hmac.new(_bytes(secret), _bytes(body), hashlib.sha256).hexdigest()
    return secret_matches(signature.strip(), expected)


def _header_secret_ok(headers: Mapping[str, str] | None, secret: str, header_name: str) -> bool:
    candidates = [header(headers, header_name)]
    authorization = header(headers, "Authorization")
    if authorization is not None:
        scheme, _, rest = authorization.strip().partition(" ")
        candidates += [authorization.strip(), rest.strip() if scheme.lower() == "bearer" else None]
    # evaluate every candidate: which one matched must not show in the timing either
    results = [secret_matches(c, secret) for c in candidates]
    return any(results)


def _query(query: Mapping[str, str] | None, name: str) -> str | None:
    if not query:
        return None
    value = query.get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


# -- verification --------------------------------------------------------------------------------

def verify_webhook(provider: str, headers: Mapping[str, str] | None, query: Mapping[str, str] | None,
                   body: bytes | str, secrets: TriggerSecrets, *, path_token: str | None = None) -> None:
    """Raise WebhookAuthError unless the delivery carries `provider`'s configured secret; UnknownProvider
    for a provider we do not read. Call it before parsing: nothing unauthenticated is even parsed."""
    name = provider.lower() if isinstance(provider, str) else ""
    if name not in PROVIDERS:
        raise UnknownProvider(f"unknown webhook provider {str(provider)[:40]!r}: expected one of "
                              f"{', '.join(sorted(PROVIDERS))}", target="provider")
    secret = secrets.for_provider(name)
    if not secret:
        raise WebhookNotConfigured(f"{name} webhooks are not accepted: no secret is configured "
                                   f"(set {SECRET_SETTINGS[name]})")
    if name == "github":
        if not github_signature_ok(body, header(headers, "X-Hub-Signature-256"), secret):
            raise WebhookAuthError("github webhook: missing or wrong X-Hub-Signature-256")
    elif name == "dockerhub":
        token = path_token if path_token is not None else _query(query, TOKEN_PARAM)
        if not secret_matches(token, secret):
            raise WebhookAuthError("dockerhub webhook: missing or wrong token in the URL")
    elif not _header_secret_ok(headers, secret, secrets.header_name):
        raise WebhookAuthError(f"{name} webhook: missing or wrong {secrets.header_name} (or Authorization) header")


def verify_eventgrid(headers: Mapping[str, str] | None, query: Mapping[str, str] | None,
                     secrets: TriggerSecrets) -> None:
    """Event Grid: `?token=<secret>` on the endpoint URL (present on the validation handshake too), or
    the secret header as a delivery property. Raise WebhookAuthError otherwise."""
    if not secrets.eventgrid:
        raise WebhookNotConfigured(f"Event Grid deliveries are not accepted: no secret is configured "
                                   f"(set {SECRET_SETTINGS['eventgrid']})")
    by_query = secret_matches(_query(query, TOKEN_PARAM), secrets.eventgrid)
    by_header = secret_matches(header(headers, secrets.header_name), secrets.eventgrid)
    if not (by_query or by_header):
        raise WebhookAuthError(f"event grid delivery: missing or wrong ?{TOKEN_PARAM}= or {secrets.header_name}")
