"""The one exception tree of importcore; every failure a user sees is one of these.

    ImporterError                  base: .code (stable string), .retryable, one-line str()
    ├── UsageError                 bad input: a reference, a flag, a request field (CLI 2, HTTP 400)
    │   ├── UnknownProvider        /api/webhooks/{provider} names no provider we read (HTTP 404)
    │   └── ConfigError            the local host's host.json, an app setting or a binding is unusable
    ├── PolicyError                refused by our own rules before any copy
    │   ├── HostNotAllowed         source host is loopback/private/metadata and not allow-listed
    │   ├── LimitExceeded          too many manifests, a layer too large, a body too large
    │   ├── ConflictError          NoForce: a target tag already points at another digest
    │   ├── SignatureVerificationFailed  verify before promote: no valid signature by the configured keys
    │   └── WebhookAuthError       an event delivery without the sender's secret (HTTP 401)
    │       └── WebhookNotConfigured   no secret is configured for that sender: nothing is trusted
    ├── RegistryError              a registry answered with an error status (+ OCI error codes), or
    │   │                          refused us with no status to show (.status None)
    │   ├── AuthError              401/403, UNAUTHORIZED, DENIED; a token or credential we cannot use
    │   └── NotFoundError          404, NAME_UNKNOWN, MANIFEST_UNKNOWN, BLOB_UNKNOWN
    ├── TransportError             could not talk to a registry: refused, reset, timeout, EOF
    ├── IntegrityError             size or digest mismatch: the bytes are not what was promised
    ├── ManifestError              a manifest we cannot or must not handle
    ├── BadSignature               why one signature does not count (engine/verify.py gathers them into
    │                              SignatureVerificationFailed; never a failure on its own)
    ├── DeadlineReached            out of the host's time: no more blob transfers start (retryable)
    ├── StaleJob                   the job record changed since it was read (a table 412)
    └── LeaseLost                  ... during a copy: another worker owns the job now, stop

Whether to retry is asked of the error (``retryable``), never guessed by the caller
(go-containerregistry transport/error.go keeps the same table).
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BadSignature",
    "ConfigError",
    "ConflictError",
    "DeadlineReached",
    "HostNotAllowed",
    "ImporterError",
    "IntegrityError",
    "LeaseLost",
    "LimitExceeded",
    "ManifestError",
    "NotFoundError",
    "PolicyError",
    "RegistryError",
    "SignatureVerificationFailed",
    "StaleJob",
    "TransportError",
    "UnknownProvider",
    "UsageError",
    "WebhookAuthError",
    "WebhookNotConfigured",
]

# Statuses worth another try: the server or something in between was busy or broken.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# OCI error codes that say "this will not get better by asking again".
PERMANENT_CODES = frozenset(
    {"DENIED", "UNAUTHORIZED", "NAME_UNKNOWN", "NAME_INVALID", "MANIFEST_UNKNOWN",
     "MANIFEST_INVALID", "BLOB_UNKNOWN", "DIGEST_INVALID", "SIZE_INVALID", "UNSUPPORTED"}
)


class ImporterError(Exception):
    """Base of every error importcore raises on purpose."""

    code = "ImportFailed"
    transient = False  # this kind of failure may pass by itself: another try is worth it

    def __init__(self, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target  # the input field or object the error is about

    @property
    def retryable(self) -> bool:
        """Whether another try may succeed (a RegistryError also asks its status and codes)."""
        return self.transient

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message, "retryable": self.retryable}
        if self.target:
            out["target"] = self.target
        return out


class UsageError(ImporterError):
    code = "InvalidRequest"


class UnknownProvider(UsageError):
    """`/api/webhooks/{provider}` names no provider we read (answer 404)."""

    code = "UnknownProvider"


class ConfigError(UsageError):
    """The local functions host cannot use host.json, an app setting or a binding."""

    code = "InvalidConfiguration"


class PolicyError(ImporterError):
    code = "Refused"


class HostNotAllowed(PolicyError):
    code = "HostNotAllowed"


class LimitExceeded(PolicyError):
    code = "LimitExceeded"


class ConflictError(PolicyError):
    code = "TagConflict"


class SignatureVerificationFailed(PolicyError):
    """The source carries no valid signature by any configured key: nothing was tagged. Permanent:
    asking again finds the same signatures (a new one means a new request)."""

    code = "SignatureVerificationFailed"


class WebhookAuthError(PolicyError):
    """Missing or wrong signature / secret: answer 401 and queue nothing."""

    code = "Unauthorized"


class WebhookNotConfigured(WebhookAuthError):
    """No secret is configured for this sender, so nothing from it can be trusted."""

    code = "WebhookNotConfigured"


class RegistryError(ImporterError):
    """A registry (or its token service) answered with an error status, or refused us without one.

    `status` is the HTTP status of the answer, None when there is none to show: a credential helper
    that failed, a token endpoint whose 200 held no token, a chain of redirects cut short."""

    code = "RegistryError"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: tuple[str, ...] = (),
        retry_after: float | None = None,
        rate_limit: str | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message, target=target)
        self.status = status
        self.codes = codes
        self.retry_after = retry_after
        self.rate_limit = rate_limit

    @property
    def retryable(self) -> bool:
        if PERMANENT_CODES.intersection(self.codes):
            return False
        return self.status in RETRYABLE_STATUSES

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.status is not None:
            out["status"] = self.status
        if self.codes:
            out["registryCodes"] = list(self.codes)
        if self.retry_after is not None:
            out["retryAfter"] = self.retry_after
        if self.rate_limit:
            out["rateLimit"] = self.rate_limit
        return out


class AuthError(RegistryError):
    code = "Unauthorized"


class NotFoundError(RegistryError):
    code = "NotFound"


class TransportError(ImporterError):
    code = "ConnectionFailed"
    transient = True


class IntegrityError(ImporterError):
    code = "DigestMismatch"


class ManifestError(ImporterError):
    code = "InvalidManifest"


class BadSignature(ImporterError):
    """Why one signature does not count; `str()` is the reason, shown in the failure's `(...)`."""

    code = "BadSignature"


class DeadlineReached(ImporterError):
    """The import stopped starting blobs before the host's timeout; what it copied stays (retry it).

    `copied`: blobs this attempt copied or mounted, so a caller can tell progress from a stall."""

    code = "DeadlineReached"
    transient = True
    copied = 0


class StaleJob(ImporterError):
    """Someone else changed the job record since we read it (HTTP 412 from the table)."""

    code = "StaleJob"


class LeaseLost(ImporterError):
    """The record changed under us during a copy (the timer presumed us dead): stop, someone else
    owns it now."""

    code = "LeaseLost"
