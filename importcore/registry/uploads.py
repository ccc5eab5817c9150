"""Blob upload sessions (distribution-spec "Pushing blobs"): POST opens one, a streamed PATCH fills it,
PUT ?digest= closes it, DELETE cancels it, GET tells how much it holds.

RegistryClient holds one UploadSessions and hands it itself as the Requester: the requests, their
error classification and retries stay the client's, and this Protocol says which of them uploads use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

import httpx

from ..auth import scopes_for
from ..values.errors import ImporterError, RegistryError
from ..observe.redact import redact_url

__all__ = ["Requester", "UploadSessions"]

T = TypeVar("T")


class Requester(Protocol):
    """What upload sessions need of the client of their registry."""

    registry: str

    def url(self, repository: str, kind: str, ref: str = "") -> httpx.URL: ...

    def send(self, method: str, url: httpx.URL, *, scopes: Iterable[str], what: str,
             headers: dict[str, str] | None = None, content: bytes | Iterable[bytes] | None = None,
             stream: bool = False) -> httpx.Response: ...

    def error(self, response: httpx.Response, what: str) -> RegistryError: ...

    def retry(self, fn: Callable[[], T]) -> T: ...


class UploadSessions:
    """The upload-session requests of one registry, made through its client."""

    def __init__(self, client: Requester) -> None:
        self._client = client

    def start(self, repository: str) -> httpx.URL:
        client = self._client
        what = f"upload start in {client.registry}/{repository}"

        def once() -> httpx.URL:
            r = client.send("POST", client.url(repository, "blobs", "uploads/"),
                            scopes=[scopes_for(repository, "pull", "push")], what=what,
                            headers={"Content-Length": "0"})
            if r.status_code != 202:
                raise client.error(r, what)
            return self.location(r, what)

        return client.retry(once)

    def location(self, r: httpx.Response, what: str) -> httpx.URL:
        """The session's Location from an answer that opened or moved it on."""
        location = r.headers.get("location")
        if not location:
            raise RegistryError(f"{what}: the registry gave no upload Location", status=r.status_code)
        # Relative Locations are resolved against the request, and their query (_state) kept verbatim.
        # An absolute one is the URL itself (parsing it once, not twice as join() does).
        try:
            if location.startswith(("https://", "http://")):
                return httpx.URL(location)
            return r.request.url.join(location)
        except httpx.InvalidURL:
            raise RegistryError(f"{what}: the registry gave an unusable upload Location", status=r.status_code) \
                from None

    def patch(self, location: httpx.URL, repository: str, body: Iterable[bytes],
              what: str) -> tuple[httpx.URL, int | None]:
        """Stream `body` into the session in one PATCH (chunked transfer encoding, no Content-Length:
        the body may end early and still be a complete request); -> (next Location, the registry's
        offset from its Range header, if it sent one). Not retried here: the transfer is the unit."""
        r = self._client.send("PATCH", location, scopes=[scopes_for(repository, "pull", "push")], what=what,
                              headers={"Content-Type": "application/octet-stream"}, content=body)
        if r.status_code != 202:
            raise self._client.error(r, what)
        return self.location(r, what), _range_offset(r.headers.get("range"))

    def status(self, location: httpx.URL, repository: str) -> tuple[int | None, httpx.URL]:
        """GET <location> (distribution-spec "Resuming an upload"): (bytes the session holds, the Location
        to continue with). Distribution 2.8 answers 404 BLOB_UPLOAD_INVALID when the Location's signed
        `_state` offset is not the stored size; 3.0 no longer checks it here (distribution PR #3755)."""
        what = f"status of upload {redact_url(location)}"
        r = self._client.send("GET", location, scopes=[scopes_for(repository, "pull", "push")], what=what)
        if r.status_code not in (200, 204):
            raise self._client.error(r, what)
        fresh = self.location(r, what) if r.headers.get("location") else location
        return _range_offset(r.headers.get("range")), fresh

    def commit(self, location: httpx.URL, repository: str, digest: str, what: str, *,
               body: bytes = b"") -> None:
        """Close the session: PUT <location>?digest= with no body, or with the whole (small, already
        verified) blob as a monolithic upload; the registry verifies the digest."""
        sep = "&" if location.query else "?"
        url = httpx.URL(str(location) + f"{sep}digest={digest.replace(':', '%3A')}")
        r = self._client.send("PUT", url, scopes=[scopes_for(repository, "pull", "push")], what=what,
                              headers={"Content-Type": "application/octet-stream",
                                       "Content-Length": str(len(body))},
                              content=body)
        if r.status_code not in (201, 204):
            raise self._client.error(r, what)

    def cancel(self, location: httpx.URL, repository: str) -> bool:
        """DELETE an upload session; True when the registry says it is gone. Best effort, never raises.

        A Location whose `_state` no longer matches the stored size (a request body that broke off
        half-way) gets 404 BLOB_UPLOAD_INVALID from Distribution (416 RANGE_INVALID from 3.0), and the
        session stays. Registries that answer GET <location> anyway (Distribution 3.0, PR #3755) hand
        out a current Location there, which is DELETEd instead; 2.8 keeps such a session until its
        upload purger runs (storage.maintenance.uploadpurging, a week by default).
        """
        scopes = [scopes_for(repository, "pull", "push")]
        what = f"cancel of upload {redact_url(location)}"
        try:
            r = self._client.send("DELETE", location, scopes=scopes, what=what)
            if r.status_code in (200, 202, 204):
                return True
            codes = self._client.error(r, what).codes
            if "BLOB_UPLOAD_UNKNOWN" in codes:
                return True  # already gone (cancelled, committed, or purged)
            if not {"BLOB_UPLOAD_INVALID", "RANGE_INVALID"} & set(codes):
                return False
            _, fresh = self.status(location, repository)
            return self._client.send("DELETE", fresh, scopes=scopes, what=what).status_code in (200, 202, 204)
        except ImporterError:
            return False


def _range_offset(value: str | None) -> int | None:
    """The size an upload session holds, from its `Range: 0-<last byte>` header (distribution-spec)."""
    if not value:
        return None
    start, sep, end = value.strip().removeprefix("bytes=").partition("-")
    if not sep or not start.isdigit() or not end.isdigit() or not start.isascii() or not end.isascii():
        return None
    return int(end) + 1
