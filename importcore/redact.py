"""Keep secrets out of logs: URLs lose their query and userinfo, known secrets become ***.

httpx logs every request URL at INFO ("HTTP Request: PUT …?_state=…"); an upload's `_state`,
a CDN signature or an `access_token` in a query must never reach a log sink.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactingFilter", "install", "redact_text"]

_URL_QUERY = re.compile(r"(https?://[^\s?#\"']*)\?[^\s\"']*", re.ASCII)
_USERINFO = re.compile(r"(https?://)[^/\s@\"']+@", re.ASCII)
_AUTH_HEADER = re.compile(r"((?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.ASCII)


def redact_text(text: str) -> str:
    text = _USERINFO.sub(r"\1", text)
    text = _URL_QUERY.sub(r"\1?…", text)
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


_installed = False


def install() -> None:
    """Attach the filter to the loggers of the HTTP libraries we drive (idempotent)."""
    global _installed
    if _installed:
        return
    # Logger filters are not inherited by child loggers: name each one that logs.
    for name in ("httpx", "httpcore", "importcore", "importcore.worker", "importcore.sweeper", "importcore.service"):
        logging.getLogger(name).addFilter(RedactingFilter())
    _installed = True
