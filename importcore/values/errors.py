"""The one exception tree of importcore; every failure a user sees is one of these.

    ImporterError                  base: .code (stable string), .retryable, one-line str()
    ├── UsageError                 bad input: a reference, a flag, a request field (CLI 2, HTTP 400)
    ├── PolicyError                refused by our own rules before any copy
    │   ├── HostNotAllowed         source host is loopback/private/metadata and not allow-listed
    │   ├── LimitExceeded          too many manifests, a layer too large, a body too large
    │   ├── ConflictError          NoForce: a target tag already points at another digest
    │   └── SignatureVerificationFailed  verify before promote: no valid signature by the configured keys
    ├── RegistryError              a registry answered with an error status (+ OCI error codes)
    │   ├── AuthError              401/403, UNAUTHORIZED, DENIED
    │   └── NotFoundError          404, NAME_UNKNOWN, MANIFEST_UNKNOWN, BLOB_UNKNOWN
    ├── TransportError             could not talk to a registry: refused, reset, timeout, EOF
    ├── IntegrityError             size or digest mismatch: the bytes are not what was promised
    └── ManifestError              a manifest we cannot or must not handle

Whether to retry is asked of the error (``retryable``), never guessed by the caller
(go-containerregistry transport/error.go keeps the same table).
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConflictError",
    "HostNotAllowed",
    "ImporterError",
    "IntegrityError",
    "LimitExceeded",
    "ManifestError",
    "NotFoundError",
    "PolicyError",
    "RegistryError",
    "SignatureVerificationFailed",
    "TransportError",
    "UsageError",
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
    retryable = False

    def __init__(self, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target  # the input field or object the error is about

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message, "retryable": self.retryable}
        if self.target:
            out["target"] = self.target
        return out


class UsageError(ImporterError):
    code = "InvalidRequest"


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


class RegistryError(ImporterError):
    """A registry answered with an error status."""

    code = "RegistryError"

    def __init__(
        self,
        message: str,
        *,
        status: int,
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
    def retryable(self) -> bool:  # type: ignore[override]
        if PERMANENT_CODES.intersection(self.codes):
            return False
        return self.status in RETRYABLE_STATUSES

    def to_dict(self) -> dict:
        out = super().to_dict()
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
    retryable = True


class IntegrityError(ImporterError):
    code = "DigestMismatch"


class ManifestError(ImporterError):
    code = "InvalidManifest"
