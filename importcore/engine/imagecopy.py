"""The copy engine: plan, check the targets, move blobs, push manifests bottom-up, then tag.

Nothing is tagged unless everything under it is present in the target: blobs first, child
manifests by digest, the top manifest, and only then the tags.

With a `deadline` (the function host's timeout, less a margin) no blob transfer starts after it:
the blobs in flight finish, then DeadlineReached says "retry me", and the next attempt skips every
blob the target already has (issue 4, "host timeouts").
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..observe import telemetry
from .blobcopy import BlobOutcome, SessionHook, copy_blob
from ..values.errors import ConflictError, DeadlineReached
from ..values.media import Platform
from .plan import Limits, Plan, plan_import
from ..values.reference import Reference, TargetSpec
from ..registry.client import RegistryClient

__all__ = ["CopyOptions", "ImportResult", "Progress", "copy_image"]


@dataclass(frozen=True, slots=True)
class CopyOptions:
    force: bool = False
    platforms: tuple[Platform, ...] = ()  # one: that image out of an index; several: a subset index
    copy_foreign: bool = False
    limits: Limits = Limits()
    concurrency: int = 4


@dataclass
class Progress:
    """Live counters; `on_progress` gets this object (throttle on the receiving side)."""

    phase: str = "resolving"
    blobs_total: int = 0
    blobs_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0

    def to_dict(self) -> dict:
        return {"phase": self.phase, "blobsTotal": self.blobs_total, "blobsDone": self.blobs_done,
                "bytesTotal": self.bytes_total, "bytesDone": self.bytes_done}


@dataclass
class ImportResult:
    digest: str = ""  # what the target holds now
    source_digest: str = ""  # what the source reference resolved to (differs when platforms were picked)
    media_type: str = ""
    tags: list[str] = field(default_factory=list)
    repositories: list[str] = field(default_factory=list)
    manifests: int = 0
    copied: int = 0
    skipped: int = 0
    mounted: int = 0
    bytes: int = 0
    foreign_skipped: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"digest": self.digest, "sourceDigest": self.source_digest or self.digest,
                "mediaType": self.media_type, "tags": self.tags,
                "repositories": self.repositories, "manifests": self.manifests,
                "blobs": {"copied": self.copied, "skipped": self.skipped, "mounted": self.mounted},
                "bytes": self.bytes, "foreignLayersSkipped": self.foreign_skipped,
                "seconds": round(self.seconds, 3)}


def copy_image(*, source: RegistryClient, ref: Reference, target: RegistryClient, targets: list[TargetSpec],
               options: CopyOptions, on_progress: Callable[[Progress], None] = lambda p: None,
               on_session: SessionHook = lambda repo, loc: None, deadline: float | None = None) -> ImportResult:
    """Import `ref` from `source` into `targets` of `target`; raises an ImporterError on failure.

    `deadline` (time.monotonic()): no blob transfer starts after it; see DeadlineReached."""
    started = time.monotonic()
    progress = Progress()
    on_progress(progress)
    result = ImportResult(repositories=sorted({t.repository for t in targets}))
    # Cheapest path first: HEADs only (no Docker Hub pull is spent) when the target already has it.
    if not options.platforms:
        resolved = source.manifest_head(ref.repository, ref.ref)
        if resolved is not None and _all_present(target, targets, resolved[0]):
            result.digest, result.media_type = resolved[0], resolved[1].split(";")[0]
            result.source_digest = result.digest
            result.tags = [f"{t.repository}:{t.tag}" for t in targets if t.tag]
            result.seconds = time.monotonic() - started
            progress.phase = "done"
            on_progress(progress)
            return result
        if resolved is not None and ref.digest is None and resolved[0].startswith("sha256:"):
            # Fetch what the HEAD named, by digest: the bytes are then verified against it, and a tag
            # moved in between cannot make the NoForce check and the copy disagree.
            ref = Reference(ref.registry, ref.repository, ref.tag, resolved[0])
    with ThreadPoolExecutor(max_workers=max(1, options.concurrency), thread_name_prefix="blob") as pool:
        plan = plan_import(source, ref, platforms=options.platforms, limits=options.limits,
                           copy_foreign=options.copy_foreign, pool=pool)
        result.digest, result.media_type = plan.top.digest, plan.top.media_type
        result.source_digest = plan.source.digest or plan.top.digest
        result.manifests, result.foreign_skipped = len(plan.manifests), len(plan.foreign)
        if options.platforms and _all_present(target, targets, plan.top.digest):
            # What the platforms pick (a subset index is deterministic) is already in place: nothing to write.
            result.tags = [f"{t.repository}:{t.tag}" for t in targets if t.tag]
            result.seconds = time.monotonic() - started
            progress.phase = "done"
            on_progress(progress)
            return result
        if not options.force:
            _check_no_conflict(target, targets, plan.top.digest)
        progress.phase = "copying"
        progress.blobs_total = len(plan.blobs) * len(result.repositories)
        progress.bytes_total = plan.total_bytes * len(result.repositories)
        on_progress(progress)
        first_repo: str | None = None
        for repo in result.repositories:
            if target.manifest_head(repo, plan.top.digest, push=True) is None:
                # Same registry: mount from the source. Otherwise the target may still hold the blobs
                # under the source's path from an earlier default-target import; a mount from a
                # repository without the blob just opens the upload (distribution-spec "Mounting a
                # blob from another repository": 202), so the guess costs no extra request.
                mount_from = first_repo or (ref.repository if ref.repository != repo else None)
                _copy_blobs(plan, repo, mount_from, source=source, target=target, pool=pool, result=result,
                            progress=progress, on_progress=on_progress, on_session=on_session, deadline=deadline)
                *children, top = plan.manifests
                for manifest in children:
                    target.manifest_put(repo, manifest.digest, manifest)
                if not any(t.tag for t in targets if t.repository == repo):
                    target.manifest_put(repo, top.digest, top)  # untagged: by digest only
            else:
                result.skipped += len(plan.blobs)
            first_repo = first_repo or repo
        progress.phase = "tagging"
        on_progress(progress)
        for spec in targets:
            if spec.tag:
                target.manifest_put(spec.repository, spec.tag, plan.top)
                result.tags.append(f"{spec.repository}:{spec.tag}")
    progress.phase = "done"
    on_progress(progress)
    result.seconds = time.monotonic() - started
    return result


def _all_present(target: RegistryClient, targets: list[TargetSpec], digest: str) -> bool:
    for spec in targets:
        found = target.manifest_head(spec.repository, spec.tag or digest, push=True)
        if found is None or found[0] != digest:
            return False
    return True


def _check_no_conflict(target: RegistryClient, targets: list[TargetSpec], digest: str) -> None:
    """NoForce: fail before copying anything if a target tag already points elsewhere."""
    for spec in targets:
        if not spec.tag:
            continue
        found = target.manifest_head(spec.repository, spec.tag, push=True)
        if found is not None and found[0] != digest:
            raise ConflictError(
                f"target tag {target.registry}/{spec.repository}:{spec.tag} already exists with digest {found[0]} "
                f"(importing {digest}); use --force (mode Force) to overwrite it", target=str(spec))


class _NotStarted(Exception):
    """A blob transfer skipped because another one failed.

    Private and outside the tree on purpose: it only travels from a pool task to _copy_blobs through
    its future, and _copy_blobs never lets it out (a real error, or DeadlineReached, is raised instead)."""


def _copy_blobs(plan: Plan, repo: str, mount_from: str | None, *, source: RegistryClient, target: RegistryClient,
                pool: ThreadPoolExecutor, result: ImportResult, progress: Progress,
                on_progress: Callable[[Progress], None], on_session: SessionHook, deadline: float | None) -> None:
    lock = threading.Lock()

    def on_bytes(n: int) -> None:
        with lock:
            progress.bytes_done += n
        on_progress(progress)

    failed = threading.Event()

    def one(blob_digest: str) -> None:
        if failed.is_set():
            raise _NotStarted  # a blob failed for good: the import fails, more transfers would be waste
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineReached("not started")  # replaced below by one error naming the progress
        blob = plan.blobs[blob_digest]
        try:
            with telemetry.span("blob", digest=blob.digest, size=blob.size, repository=repo) as span:
                outcome = copy_blob(blob, source=source, source_repo=plan.source.repository, target=target,
                                    target_repo=repo, mount_from=mount_from, on_bytes=on_bytes,
                                    on_session=on_session)
                if span is not None:
                    span.set_attribute("outcome", outcome.value)
        except BaseException:
            failed.set()
            raise
        with lock:
            progress.blobs_done += 1
            if outcome is BlobOutcome.COPIED:
                result.copied += 1
                result.bytes += blob.size
            else:
                if outcome is BlobOutcome.MOUNTED:
                    result.mounted += 1
                else:
                    result.skipped += 1
                progress.bytes_done += blob.size
        on_progress(progress)

    # Largest first: the long transfers start early and the small ones fill the gaps.
    order = sorted(plan.blobs, key=lambda d: -plan.blobs[d].size)
    # Each task runs in a copy of this context: the job id (log records) and the import's span
    # (the parent of the blob spans) follow the work into the pool's threads.
    futures = [pool.submit(contextvars.copy_context().run, one, digest) for digest in order]
    done, pending = wait(futures, return_when=FIRST_EXCEPTION)
    for future in pending:
        future.cancel()
    wait(pending)  # the transfers in flight finish (or fail) first
    errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
    for error in errors:
        if not isinstance(error, (DeadlineReached, _NotStarted)):
            raise error  # type: ignore[misc]  # a real failure says more than "out of time"
    if errors:
        stopped = DeadlineReached(
            f"stopped before the function timeout with {progress.blobs_done} of {progress.blobs_total} blobs in "
            f"{target.registry}/{repo}; the next attempt continues with the rest "
            "(IMPORT_FUNCTION_TIMEOUT_SECONDS, IMPORT_DEADLINE_MARGIN_SECONDS)")
        stopped.copied = result.copied + result.mounted
        raise stopped
