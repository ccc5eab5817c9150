"""Keep secrets out of logs: URLs lose their query and userinfo, known secrets become ***.

httpx logs every request URL at INFO ("HTTP Request: PUT …?_state=…"); an upload's `_state`,
a CDN signature or an `access_token` in a query must never reach a log sink.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable

import httpx

__all__ = ["RedactingFilter", "install", "redact_text", "redact_url", "scrub"]

_URL_QUERY = re.compile(r"(https?://[^\s?#\"']*)\?[^\s\"']*", re.ASCII)
# A relative URL's query too: registries may answer `Location: /v2/…/uploads/…?_state=…`, and
# httpcore logs response headers (as bytes reprs: b'/v2/…') at DEBUG.
_PATH_QUERY = re.compile(r"((?:^|[\s\"'(=])/[^\s?#\"']*)\?(?!…)[^\s\"']*", re.ASCII)
_USERINFO = re.compile(r"(https?://)[^/\s@\"']+@", re.ASCII)
_AUTH_HEADER = re.compile(r"((?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.ASCII)


def redact_url(url: httpx.URL | str) -> str:
    """A URL safe for logs and errors: no userinfo, no query (signatures, upload state)."""
    url = httpx.URL(str(url))
    return str(url.copy_with(userinfo=b"", query=None, fragment=None)) + ("?…" if url.query else "")


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every given secret (and its Basic-auth and base64 forms) replaced by ***.

    Error texts quote what registries answer; a hostile one can echo the credentials it was sent.
    """
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        forms = {secret, base64.b64encode(secret.encode()).decode()}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "***")
    return text


def redact_text(text: str) -> str:
    text = _USERINFO.sub(r"\1", text)
    text = _URL_QUERY.sub(r"\1?…", text)
    text = _PATH_QUERY.sub(r"\1?…", text)
    return _AUTH_HEADER.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message in place (after %-formatting) with redact_text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactingFilter()
_PREFIXES = ("httpx", "httpcore", "importcore")
# httpcore logs under its children (httpcore.http11 logs response headers, Location included).
_NAMED = ("httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "httpcore.socks",
          "importcore.worker", "importcore.sweeper", "importcore.service")


def install() -> None:
    """Attach the filter to the loggers of the HTTP libraries we drive and to ours (idempotent).

    Logger filters are not inherited by child loggers, so each one that logs needs it: those
    named here and every existing logger under the prefixes (re-scanned on each call, cheap).
    """
    children = tuple(f"{prefix}." for prefix in _PREFIXES)
    names = {*_PREFIXES, *_NAMED, *(n for n in logging.root.manager.loggerDict if n.startswith(children))}
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
