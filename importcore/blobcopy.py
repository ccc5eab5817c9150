"""Move one blob: skip if present, mount if possible, else stream source -> target while hashing.

The cheap paths come first (regclient's blob copy). The streamed path holds back the last
chunk until size and digest are verified, so a corrupt or oversized source never completes
an upload; the registry verifies the digest again on the final PUT.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from enum import Enum

import httpx

from .errors import AuthError, ImporterError, IntegrityError, NotFoundError, TransportError
from .media import Descriptor
from .registry import RegistryClient
from .retry import attempts

__all__ = ["BlobOutcome", "copy_blob"]


class BlobOutcome(Enum):
    SKIPPED = "skipped"
    MOUNTED = "mounted"
    COPIED = "copied"


def copy_blob(blob: Descriptor, *, source: RegistryClient, source_repo: str, target: RegistryClient,
              target_repo: str, mount_from: str | None, on_bytes: Callable[[int], None] = lambda n: None,
              on_session: Callable[[str, httpx.URL | None], None] = lambda repo, loc: None) -> BlobOutcome:
    """Copy one blob into target_repo; `mount_from` is a repository of the target registry holding it."""
    if target.blob_head(target_repo, blob.digest, push=True) is not None:
        on_bytes(0)
        return BlobOutcome.SKIPPED
    # A blob counted in progress by a failed attempt is counted again: progress restarts per attempt.
    for attempt in attempts():
        with attempt:
            location = None
            if mount_from is not None:
                try:
                    location = target.blob_mount(target_repo, blob.digest, mount_from)
                except AuthError:
                    # No pull on mount_from (a token scoped to the target repository): upload instead.
                    location = None
                else:
                    if location is None:
                        return BlobOutcome.MOUNTED
            location = location or target.upload_start(target_repo)
            on_session(target_repo, location)
            try:
                with source.blob_get(source_repo, blob.digest) as response:
                    what = f"blob {blob.digest} from {source.registry}/{source_repo}"
                    body = _verified(response.iter_raw(), blob, what, on_bytes)
                    target.upload_put(location, target_repo, blob.digest, body, blob.size)
            except ImporterError as exc:
                target.upload_cancel(location, target_repo)
                on_session(target_repo, None)
                if blob.foreign and isinstance(exc, NotFoundError):
                    # A foreign layer's publisher serves it from its `urls`; registries usually do not
                    # hold it, and fetching arbitrary URLs is not something we do on a caller's say-so.
                    raise NotFoundError(
                        f"foreign layer {blob.digest} is not in the source registry {source.registry}/{source_repo} "
                        f"({exc.status}); --copy-foreign-layers copies only foreign layers the source registry "
                        "holds: import without it to keep the layer referenced by its URLs",
                        status=exc.status, codes=exc.codes, target=blob.digest) from None
                raise
            on_session(target_repo, None)
            return BlobOutcome.COPIED
    raise AssertionError("unreachable")


def _verified(chunks: Iterator[bytes], blob: Descriptor, what: str,
              on_bytes: Callable[[int], None]) -> Iterator[bytes]:
    """Yield the body while hashing it; the last chunk only once size and digest are right."""
    algorithm, _, expected = blob.digest.partition(":")
    hasher = hashlib.new(algorithm)
    received = 0
    held: bytes | None = None
    try:
        for chunk in chunks:
            if not chunk:
                continue
            received += len(chunk)
            if received > blob.size:
                raise IntegrityError(f"{what}: the source sent more than the {blob.size} bytes its descriptor "
                                     "declares", target=blob.digest)
            hasher.update(chunk)
            if held is not None:
                yield held
                on_bytes(len(held))
            held = chunk
    except httpx.HTTPError as exc:
        raise TransportError(f"{what}: download broke off after {received} of {blob.size} bytes "
                             f"({exc.__class__.__name__})") from None
    if received != blob.size:
        raise IntegrityError(f"{what}: the source sent {received} bytes, the descriptor declares {blob.size}",
                             target=blob.digest)
    actual = hasher.hexdigest()
    if actual != expected:
        raise IntegrityError(f"{what}: digest mismatch, the content hashes to {algorithm}:{actual}",
                             target=blob.digest)
    if held is not None:
        yield held
        on_bytes(len(held))
