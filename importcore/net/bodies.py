"""Response bodies read under a cap: a server chooses how much it sends, we choose how much we hold.

    limited(chunks, n)              the chunks, cut off after n bytes (the transport's error-body cap)
    read_capped(response, n)        the whole body, or None when it is longer than n
    send_capped(http, request, n)   send, then read_capped: small JSON answers (tokens, ARM)
    prefix(response, n)             at most n bytes, for an error message; never raises
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import httpx

__all__ = ["MAX_ERROR_BODY", "MAX_JSON_BODY", "limited", "prefix", "read_capped", "send_capped"]

# An error body (status >= 400) is read for a message at most. httpx itself reads a 401's whole body
# before an auth flow's retry, so transport.py applies this cap under every reader.
MAX_ERROR_BODY = 64 * 1024
# A token endpoint's or ARM's JSON answer: a few KiB in practice.
MAX_JSON_BODY = 256 * 1024


def limited(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """`chunks`, cut off after `limit` bytes in all; nothing past the cap is even pulled."""
    left = limit
    for chunk in chunks:
        if len(chunk) >= left:
            if left:
                yield chunk[:left]
            return
        left -= len(chunk)
        yield chunk


def read_capped(response: httpx.Response, limit: int, *, raw: bool = False) -> bytes | None:
    """The body, or None when it is longer than `limit` (one byte past the cap tells); httpx errors
    propagate. `raw`: the bytes as sent, content-encoding kept (a manifest's digest is over those)."""
    chunks = response.iter_raw() if raw else response.iter_bytes()
    body = b"".join(limited(chunks, limit + 1))
    return None if len(body) > limit else body


def send_capped(http: httpx.Client, request: httpx.Request, limit: int) -> tuple[bytes | None, httpx.Response]:
    """Send `request` and read at most `limit` bytes of the answer (None: it was longer); the
    response comes back closed."""
    response = http.send(request, stream=True)
    try:
        return read_capped(response, limit), response
    finally:
        response.close()


def prefix(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of a body, whether or not it was read already; a body that breaks off
    gives what came before the break (it only feeds an error message)."""
    try:
        return response.content[:limit]
    except httpx.ResponseNotRead:
        pass
    chunks = []
    try:
        for chunk in limited(response.iter_raw(), limit):
            chunks.append(chunk)
    except (httpx.HTTPError, httpx.StreamError):
        pass
    return b"".join(chunks)
