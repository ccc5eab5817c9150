"""Move one blob: skip if present, mount if possible, else stream source -> target while hashing.

The cheap paths come first (regclient's blob copy). The streamed path is POST, one streamed PATCH,
then PUT ?digest= without a body, the way skopeo (containers/image) and go-containerregistry push.
The last chunk is only sent once size and digest are verified, so a corrupt or oversized source
never completes an upload; the registry verifies the digest again on the PUT.

Faults, and how each is resumed:
- The source download breaks off: reconnect with `Range: bytes=<sent>-` and keep feeding the same
  hash and the same PATCH body (206), or drop the bytes already sent from a 200 (no range support);
  at most MAX_RECONNECTS times per attempt, and only after a connection brought new bytes.
- Anything else fails the attempt, and attempts() retries the whole transfer as a unit (one layer
  retries, never nested: net/retry.py). A session already holding bytes is resumed where the
  registry says it stands (GET <location> -> Range) when that is where our hash stands; any other
  session is cancelled (DELETE) and a new one opened.

Why one PATCH whose body we end ourselves, rather than a monolithic PUT: Distribution signs the
session's offset into the Location's `_state` and refuses every request whose offset differs from
the size it stored, DELETE included (404 BLOB_UPLOAD_INVALID, registry/handlers/blobupload.go in
v2.8.2); its own cancel of such a session then fails on an already closed file writer, so the
session's data stays until the registry's upload purger runs (a week by default). A PUT that breaks
off half-way leaves exactly that. When the source fails or the digest is wrong, the PATCH body just
ends: the request is complete, the registry answers with a Location matching what it stored, and
that Location can be cancelled or resumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from contextlib import ExitStack
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx

from ..values.errors import ImporterError, IntegrityError, NotFoundError, RegistryError, TransportError
from ..values.media import Descriptor
from ..registry.client import RegistryClient
from ..net.retry import attempts

__all__ = ["MAX_RECONNECTS", "SMALL_BLOB", "BlobOutcome", "SessionHook", "copy_blob"]

MAX_RECONNECTS = 3  # per attempt: a source that keeps breaking fails the attempt, attempts() backs off
# Blobs up to this size are read whole (verified) and sent in one PUT: POST + PUT instead of
# POST + PATCH + PUT saves a round trip and a registry write per config or small layer, and a
# verified body in memory never leaves a half-filled session behind.
SMALL_BLOB = 1024 * 1024

# Called with (repository, Location) when an upload session opens or moves on, and (repository, None)
# when it is done with: the worker records open sessions so that a crash leaves them findable.
SessionHook = Callable[[str, "httpx.URL | None"], None]


class BlobOutcome(Enum):
    SKIPPED = "skipped"
    MOUNTED = "mounted"
    COPIED = "copied"


@dataclass
class _Session:
    """One upload session across attempts: its latest Location, what it holds, the hash of that."""

    hasher: Any
    location: httpx.URL | None = None
    offset: int = 0
    complete: bool = False  # every byte is in and verified: only the PUT is missing


def copy_blob(blob: Descriptor, *, source: RegistryClient, source_repo: str, target: RegistryClient,
              target_repo: str, mount_from: str | None, on_bytes: Callable[[int], None] = lambda n: None,
              on_session: SessionHook = lambda repo, loc: None, reads: Executor | None = None) -> BlobOutcome:
    """Copy one blob into target_repo; `mount_from` is a repository of the target registry that
    holds it (or may: a guess costs nothing, a mount that finds nothing opens the upload).

    With `reads`, the download starts there while this thread sends the POST that opens the upload
    (or mounts): one round trip per blob instead of two. A small blob is read whole meanwhile, a large
    one only up to its response headers; either is dropped if the POST mounts the blob."""
    if blob.size <= SMALL_BLOB:
        # A small blob gets no HEAD: a round trip costs about what its bytes do. The POST that opens
        # its upload asks for a mount instead, from `mount_from` or else from target_repo itself, and
        # a registry that holds the blob there answers 201 rather than opening a session (distribution
        # -spec "Mounting a blob from another repository"). A registry that ignores mounts gets the
        # blob again, at most SMALL_BLOB bytes. Scenario 2 of bench/: one request of four less.
        mount_from = mount_from or target_repo
    elif target.blob_head(target_repo, blob.digest, push=True) is not None:
        # HEAD even in a repository without tags: an interrupted import leaves blobs in a repository
        # whose tag list still says NAME_UNKNOWN, and redelivery must skip them.
        on_bytes(0)
        return BlobOutcome.SKIPPED
    transfer = _Transfer(blob, source, source_repo, target, target_repo, on_bytes, on_session, reads)
    session = transfer.new_session()
    try:
        for attempt in attempts():
            with attempt:
                if attempt.num > 1 and target.blob_head(target_repo, blob.digest, push=True) is not None:
                    # The last attempt's PUT may have landed with only its answer lost (or another
                    # import brought the blob meanwhile): nothing left to send.
                    ours = session.complete
                    transfer.cancel(session)
                    return BlobOutcome.COPIED if ours else BlobOutcome.SKIPPED
                try:
                    return transfer.attempt(session, mount_from)
                except ImporterError:
                    if session.offset == 0:
                        transfer.cancel(session)  # nothing worth resuming: the next attempt opens a new one
                    raise
    except ImporterError:
        transfer.cancel(session)
        raise
    raise AssertionError("unreachable")


class _Transfer:
    def __init__(self, blob: Descriptor, source: RegistryClient, source_repo: str, target: RegistryClient,
                 target_repo: str, on_bytes: Callable[[int], None], on_session: SessionHook,
                 reads: Executor | None = None) -> None:
        self.blob, self.source, self.source_repo = blob, source, source_repo
        self.target, self.target_repo = target, target_repo
        self.on_bytes, self.on_session = on_bytes, on_session
        self.reads = reads
        self.algorithm = blob.digest.partition(":")[0]
        self.what = f"blob {blob.digest} from {source.registry}/{source_repo}"
        self.upload_what = f"upload of blob {blob.digest} to {target.registry}/{target_repo}"

    def new_session(self) -> _Session:
        return _Session(hashlib.new(self.algorithm))

    def attempt(self, session: _Session, mount_from: str | None) -> BlobOutcome:
        if session.location is not None:
            self._check_resumable(session, session.location)
        small = self.blob.size <= SMALL_BLOB and not session.complete and session.offset == 0
        # A fresh session: the download starts now, beside the POST below (copy_blob's `reads`).
        early: Future[Any] | None = None
        if session.location is None and self.reads is not None:
            early = self.reads.submit(self._read_whole if small else self._open_feed)
        try:
            if session.location is None and mount_from is not None:
                mounted, location = self._mount(mount_from)
                if mounted:
                    return BlobOutcome.SKIPPED if mount_from == self.target_repo else BlobOutcome.MOUNTED
                if location is not None and small:
                    return self._small(session, location, early)
                if location is not None:
                    self._opened(session, location)
            if small:
                return self._small(session, early=early)
            location = session.location if session.complete else self._fill(session, early)
        finally:
            if early is not None:
                early.add_done_callback(_close_unused)
        assert location is not None, "a complete session keeps its Location (cancel() clears both)"
        self.target.uploads.commit(location, self.target_repo, self.blob.digest, self.upload_what)
        session.location = None
        self.on_session(self.target_repo, None)
        return BlobOutcome.COPIED

    def _open_feed(self) -> _Feed:
        """A large blob's download from its first byte, opened up to its response headers."""
        feed = _Feed(self, 0, self.new_session().hasher)
        feed.connect()
        return feed

    def _read_whole(self) -> bytes:
        """A small blob's bytes, read and verified (progress is reported by the one who uses them)."""
        feed = _Feed(self, 0, self.new_session().hasher, report=False)
        feed.connect()
        body = b"".join(feed)
        if feed.failure is not None:
            raise feed.failure
        return body

    def _fill(self, session: _Session, early: Future[Any] | None = None) -> httpx.URL:
        """Stream the rest of the blob into the session in one PATCH; -> its Location after that.
        `early`: the download already opened (a fresh session's), else it is opened here."""
        if early is not None:
            location = session.location or self._opened(session, self.target.uploads.start(self.target_repo))
            feed = early.result()  # the source's 404 or 401 now: the session opened meanwhile is cancelled
        else:
            feed = _Feed(self, session.offset, session.hasher.copy())
        try:
            if early is None:
                feed.connect()  # before opening a session: a source 404 or 401 leaves nothing behind
                location = session.location or self._opened(session, self.target.uploads.start(self.target_repo))
            try:
                location, held = self.target.uploads.patch(location, self.target_repo, feed, self.upload_what)
            except RegistryError as exc:
                if not session.offset or exc.retryable:
                    raise
                # Not every registry takes a second streamed PATCH (go-containerregistry's refuses
                # "stream uploads after first write"; ECR wants 5 MiB parts): start over instead.
                self.cancel(session)
                raise TransportError(f"{self.upload_what}: the registry would not continue the upload "
                                     f"({exc.status}); starting it over") from None
        finally:
            feed.close()
        # The PATCH completed: the session holds exactly what the body yielded.
        session.offset, session.hasher, session.complete = feed.sent, feed.hasher, feed.complete
        self._opened(session, location)
        if held is not None and feed.sent and held != feed.sent:
            raise TransportError(f"{self.upload_what}: the registry holds {held} bytes of the upload, "
                                 f"{feed.sent} were sent")
        if feed.failure is not None:
            raise feed.failure
        return location

    def _mount(self, mount_from: str) -> tuple[bool, httpx.URL | None]:
        """(mounted, the upload Location a mount that found nothing opened)."""
        try:
            location = self.target.blob_mount(self.target_repo, self.blob.digest, mount_from)
        except RegistryError as exc:
            if exc.retryable:
                raise
            # No pull on mount_from (a token scoped to the target repository), or a registry that
            # refuses mount requests outright: a plain upload instead.
            return False, None
        return location is None, location

    def _small(self, session: _Session, opened: httpx.URL | None = None,
               early: Future[Any] | None = None) -> BlobOutcome:
        """Read and verify the whole blob, then POST + one PUT with it (see SMALL_BLOB).

        `opened` is a session the mount request opened; `early` the read already under way. Neither
        session is recorded: the PUT carries every byte at once, so a crash in between leaves at most
        an empty session, which the registry's upload purger removes. A failed read or PUT cancels it."""
        location = opened
        try:
            if early is None:
                body = self._read_whole()
                location = location or session.location or self.target.uploads.start(self.target_repo)
            else:
                location = location or session.location or self.target.uploads.start(self.target_repo)
                body = early.result()
            self.on_bytes(len(body))
            self.target.uploads.commit(location, self.target_repo, self.blob.digest, self.upload_what, body=body)
        except ImporterError:
            if location is not None and location is not session.location:
                self.target.uploads.cancel(location, self.target_repo)
            raise
        if session.location is not None:
            session.location = None
            self.on_session(self.target_repo, None)
        return BlobOutcome.COPIED

    def _check_resumable(self, session: _Session, location: httpx.URL) -> None:
        """Continue a session only where the registry and our hash agree (distribution-spec
        "Resuming an upload": GET <location> -> Range); otherwise cancel it and start over."""
        try:
            held, fresh = self.target.uploads.status(location, self.target_repo)
        except ImporterError:
            held, fresh = None, location
        if held == session.offset:
            self._opened(session, fresh)
        else:
            self.cancel(session)

    def _opened(self, session: _Session, location: httpx.URL) -> httpx.URL:
        session.location = location
        self.on_session(self.target_repo, location)  # recorded before bytes flow: a crash leaves it findable
        return location

    def cancel(self, session: _Session) -> None:
        if session.location is not None:
            self.target.uploads.cancel(session.location, self.target_repo)
            self.on_session(self.target_repo, None)
        fresh = self.new_session()
        session.location, session.offset, session.hasher, session.complete = None, 0, fresh.hasher, False


class _Feed:
    """The PATCH body: the source's bytes from `sent` on, hashed as they pass.

    A failure does not raise through the upload: it is kept in `failure` and the body ends, so the
    PATCH is a complete request and the session stays usable (see the module docstring).
    """

    def __init__(self, transfer: _Transfer, start: int, hasher: Any, *, report: bool = True) -> None:
        self.t = transfer
        self.report = report  # on_bytes per chunk
        self.sent = start  # bytes yielded to the upload, counting those of earlier attempts
        self.hasher = hasher  # the hash of exactly those bytes
        self.complete = False
        self.failure: ImporterError | None = None
        self.reconnects = 0
        self._conn: ExitStack | None = None
        self._response: httpx.Response | None = None
        self._skip = 0

    def connect(self) -> None:
        """(Re)open the download at `sent`: a 206 continues there, a 200 repeats the first `sent` bytes."""
        self.close()
        t, conn = self.t, ExitStack()
        try:
            try:
                response = conn.enter_context(t.source.blob_get(t.source_repo, t.blob.digest, offset=self.sent))
            except NotFoundError as exc:
                if not t.blob.foreign:
                    raise
                # A foreign layer's publisher serves it from its `urls`; registries usually do not
                # hold it, and fetching arbitrary URLs is not something we do on a caller's say-so.
                raise NotFoundError(
                    f"foreign layer {t.blob.digest} is not in the source registry {t.source.registry}/"
                    f"{t.source_repo} ({exc.status}); --copy-foreign-layers copies only foreign layers the source "
                    "registry holds: import without it to keep the layer referenced by its URLs",
                    status=exc.status, codes=exc.codes, target=t.blob.digest) from None
            self._skip = 0
            if self.sent and response.status_code == 206:
                served = response.headers.get("content-range", "")
                if _range_start(served) != self.sent:
                    raise TransportError(f"{t.what}: asked for the bytes from {self.sent} on, the source sent "
                                         f"{served[:80]!r}")
            elif self.sent:
                self._skip = self.sent  # no range support: the whole blob again, minus what was sent
        except BaseException:
            conn.close()
            raise
        self._conn, self._response = conn, response

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = self._response = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._chunks()
        except ImporterError as exc:
            self.failure = exc  # end the body here; copy_blob raises it once the PATCH is answered
        finally:
            self.close()

    def _chunks(self) -> Iterator[bytes]:
        """The rest of the blob, each chunk checked before it goes out; after a break that brought new
        bytes the download is reopened where it stopped (at most MAX_RECONNECTS times)."""
        while True:
            fresh = 0
            try:
                assert self._response is not None, "connect() opened it, or raised"
                for chunk in self._unsent(self._response.iter_raw()):
                    self._check(chunk)
                    fresh += len(chunk)
                    yield chunk
                    self.sent += len(chunk)
                    if self.report:
                        self.t.on_bytes(len(chunk))
                break
            except httpx.HTTPError as exc:
                self._reconnect_after(exc, fresh=fresh)
        self._check_complete()

    def _unsent(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """`chunks` without the first `_skip` bytes (a source without range support sends them again)."""
        for chunk in chunks:
            if self._skip:
                dropped = min(self._skip, len(chunk))
                self._skip -= dropped
                chunk = chunk[dropped:]
            if chunk:
                yield chunk

    def _check(self, chunk: bytes) -> None:
        """Hash `chunk`, refusing it when it runs past the declared size or completes a blob whose
        digest is wrong: the last chunk goes out only when the whole blob is what was promised."""
        t, size = self.t, self.t.blob.size
        end = self.sent + len(chunk)
        if end > size:
            raise IntegrityError(f"{t.what}: the source sent more than the {size} bytes its descriptor declares",
                                 target=t.blob.digest)
        if end < size:
            self.hasher.update(chunk)
            return
        last = self.hasher.copy()
        last.update(chunk)
        self._verify(last)
        self.hasher = last

    def _verify(self, hasher: Any) -> None:
        t = self.t
        if hasher.hexdigest() != t.blob.digest.partition(":")[2]:
            raise IntegrityError(f"{t.what}: digest mismatch, the content hashes to "
                                 f"{t.algorithm}:{hasher.hexdigest()}", target=t.blob.digest)

    def _reconnect_after(self, exc: httpx.HTTPError, *, fresh: int) -> None:
        """Reset, timeout, EOF before Content-Length: reopen at `sent`. Only after progress: a source
        that breaks before sending anything new is left to the attempt's backoff."""
        if not fresh or self.reconnects >= MAX_RECONNECTS:
            tries = f", {self.reconnects} reconnects" if self.reconnects else ""
            raise TransportError(f"{self.t.what}: download broke off after {self.sent} of {self.t.blob.size} bytes "
                                 f"({exc.__class__.__name__}{tries})") from None
        self.reconnects += 1
        self.connect()

    def _check_complete(self) -> None:
        size = self.t.blob.size
        if self.sent != size:
            raise IntegrityError(f"{self.t.what}: the source sent {self.sent} bytes, the descriptor declares {size}",
                                 target=self.t.blob.digest)
        if size == 0:
            self._verify(self.hasher)  # no chunk came to be checked
        self.complete = True


def _close_unused(done: Future[Any]) -> None:
    """An early download nobody read (the POST mounted the blob, or failed): let its connection go."""
    if not done.cancelled() and done.exception() is None and isinstance(done.result(), _Feed):
        done.result().close()


def _range_start(content_range: str) -> int | None:
    """First byte of `Content-Range: bytes <first>-<last>/<size>` (RFC 9110 14.4)."""
    unit, _, rest = content_range.strip().partition(" ")
    first = rest.partition("-")[0]
    return int(first) if unit == "bytes" and first.isascii() and first.isdigit() else None
