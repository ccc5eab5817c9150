"""Azure Resource Manager's shapes, as values (no I/O): its error body, registry names and login
servers, and the HTTP status an import's outcome answers with on an ARM operation URL."""

from __future__ import annotations

import re

from .errors import RETRYABLE_STATUSES, UsageError
from .reference import parse_registry

__all__ = ["ACR_SUFFIXES", "acr_name", "arm_error", "failure_status", "parse_registry_names", "registry_for_name"]

ACR_SUFFIXES = (".azurecr.io", ".azurecr.cn", ".azurecr.us")  # public, China, US Government clouds
# A name in IMPORT_REGISTRY_NAMES: ACR's own names are 5-50 letters and digits; a registry that is
# not an ACR may be called anything ARM would carry in a path segment.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", re.ASCII)

# A failed import's error code -> the status its ARM operation URL answers with. Permanent causes are
# the caller's or the source's (4xx); causes that were retried until the attempts ran out are 5xx.
_STATUS_BY_CODE = {
    "InvalidRequest": 400, "Refused": 400, "HostNotAllowed": 400, "LimitExceeded": 400,
    "TagConflict": 409, "NotFound": 404,
    "Unauthorized": 403,  # the registry refused our credentials: 401 would tell an ARM client *its* token failed
    "DigestMismatch": 422, "InvalidManifest": 422,
    "ConnectionFailed": 502, "DeadlineReached": 504,
}


def arm_error(code: str, message: str, target: str | None = None) -> dict:
    """ARM's error body: {"error": {"code", "message", "target"}} (target only when there is one)."""
    error = {"code": code, "message": message}
    if target:
        error["target"] = target
    return {"error": error}


def acr_name(login_server: str) -> str | None:
    """`myacr` for `myacr.azurecr.io` (any cloud's suffix); None when it is not an ACR login server."""
    host = login_server.strip().lower()
    for suffix in ACR_SUFFIXES:
        name = host[: -len(suffix)] if host.endswith(suffix) else ""
        if name and "." not in name and ":" not in name:
            return name
    return None


def parse_registry_names(text: str | None, *, setting: str = "IMPORT_REGISTRY_NAMES") -> tuple[tuple[str, str], ...]:
    """`local=127.0.0.1:5000,prod=prodacr.azurecr.io` -> (("local", "127.0.0.1:5000"), ...); names are
    compared case-insensitively (as ARM does), so they are kept lowercased."""
    pairs: dict[str, str] = {}
    for item in (text or "").replace(";", ",").split(","):
        if not item.strip():
            continue
        name, sep, server = (part.strip() for part in item.partition("="))
        if not sep or not _NAME.fullmatch(name) or not server:
            raise UsageError(f"setting {setting}: {item.strip()[:80]!r} is not name=login.server "
                             "(a registry name of letters, digits, '-' or '_')")
        if name.lower() in pairs:
            raise UsageError(f"setting {setting}: the name {name!r} is given twice")
        try:
            pairs[name.lower()] = parse_registry(server)
        except UsageError as exc:
            raise UsageError(f"setting {setting}: {name}: {exc.message}") from None
    return tuple(pairs.items())


def registry_for_name(name: str, *, target_registry: str | None,
                      names: tuple[tuple[str, str], ...]) -> str | None:
    """The login server ARM's `{registryName}` stands for: a listed name, else the ACR name of the
    target registry; None when it is neither (the caller answers 404)."""
    wanted = name.strip().lower()
    for listed, login_server in names:
        if listed == wanted:
            return login_server
    if target_registry:
        try:
            target = parse_registry(target_registry)
        except UsageError:
            return None
        if acr_name(target) == wanted:
            return target
    return None


def failure_status(error: dict | None) -> int:
    """The status a Failed import's operation URL answers with (see _STATUS_BY_CODE); a registry's
    own error is 4xx when it was permanent and 502 when it was a retried 429/5xx. One without a
    status (too many redirects, an unusable Location) is never retried: permanent."""
    error = error or {}
    code = error.get("code")
    if code == "RegistryError":
        status = error.get("status")
        return 502 if isinstance(status, int) and status in RETRYABLE_STATUSES else 400
    return _STATUS_BY_CODE.get(str(code), 500)
