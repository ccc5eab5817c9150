"""The copy engine: plan, check the targets, move blobs, push manifests bottom-up, then tag.

Nothing is tagged unless everything under it is present in the target: blobs first, child
manifests by digest, the top manifest, and only then the tags.

With a `deadline` (the function host's timeout, less a margin) no blob transfer starts after it:
the blobs in flight finish, then DeadlineReached says "retry me", and the next attempt skips every
blob the target already has.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import httpx

from ..observe import telemetry
from .blobcopy import SMALL_BLOB, BlobOutcome, copy_blob
from ..values.errors import ConflictError, ImporterError
from ..values.media import Descriptor, Platform
from .plan import Limits, Plan, plan_import
from ..values.reference import Reference, TargetSpec
from ..registry.client import RegistryClient

if TYPE_CHECKING:  # imported when an import asks for them: they bring `cryptography` (~10 % of start-up)
    from .referrers import ReferrerOptions
    from .verify import VerifyPolicy

__all__ = ["CopyOptions", "DeadlineReached", "ImportResult", "Progress", "connections_for", "run_import"]

# Of the blobs in flight (CopyOptions.concurrency), at most this many large ones (> SMALL_BLOB): they
# share one link and the registries' CPU (bench/ scenario 1: 4 and 8 at once alike on loopback; over
# a 100 ms link 8 save a wave of four round trips, scenario 7), while small blobs are round trips more
# than bytes, and want many in flight over a WAN.
LARGE_AT_ONCE = 8


def connections_for(concurrency: int) -> int:
    """Connections an import keeps open at most: each blob in flight may hold one to the source and
    one to the target at once (its download streaming into its upload)."""
    return 2 * concurrency


class DeadlineReached(ImporterError):
    """The import stopped starting blobs before the host's timeout; what it copied stays (retry it).

    `copied`: blobs this attempt copied or mounted, so a caller can tell progress from a stall."""

    code = "DeadlineReached"
    retryable = True
    copied = 0


@dataclass(frozen=True, slots=True)
class CopyOptions:
    force: bool = False
    platforms: tuple[Platform, ...] = ()  # one: that image out of an index; several: a subset index
    copy_foreign: bool = False
    limits: Limits = Limits()
    concurrency: int = 16
    referrers: ReferrerOptions | None = None  # copy signatures, SBOMs, attestations (engine/referrers.py)
    verify: VerifyPolicy | None = None  # require a signature before anything is copied (engine/verify.py)


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
    referrers: dict | None = None  # with CopyOptions.referrers: ReferrerStats.to_dict()
    verified: dict | None = None  # with CopyOptions.verify: which key verified which signature

    def to_dict(self) -> dict:
        out = {"digest": self.digest, "sourceDigest": self.source_digest or self.digest,
               "mediaType": self.media_type, "tags": self.tags,
               "repositories": self.repositories, "manifests": self.manifests,
               "blobs": {"copied": self.copied, "skipped": self.skipped, "mounted": self.mounted},
               "bytes": self.bytes, "foreignLayersSkipped": self.foreign_skipped,
               "seconds": round(self.seconds, 3)}
        out.update({k: v for k, v in (("referrers", self.referrers), ("verified", self.verified)) if v is not None})
        return out


SessionHook = Callable[[str, "httpx.URL | None"], None]
T = TypeVar("T")


def run_import(*, source: RegistryClient, ref: Reference, target: RegistryClient, targets: list[TargetSpec],
               options: CopyOptions, on_progress: Callable[[Progress], None] = lambda p: None,
               on_session: SessionHook = lambda repo, loc: None, deadline: float | None = None) -> ImportResult:
    """Import `ref` from `source` into `targets` of `target`; raises an ImporterError on failure.

    `deadline` (time.monotonic()): no blob transfer starts after it; see DeadlineReached."""
    started = time.monotonic()
    progress = Progress()
    on_progress(progress)
    result = ImportResult(repositories=sorted({t.repository for t in targets}))
    # Cheapest path first: HEADs only (no Docker Hub pull is spent) when the target already has it.
    # Verification and referrers need the source's signatures and attachments, so not for them.
    shortcut = not options.platforms and options.referrers is None and options.verify is None
    workers = max(1, options.concurrency)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blob") as pool, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read") as reads:
        # The target tags' HEADs go out with the source's (a no-op's check is one round trip), and the
        # NoForce check below reads the same answers.
        heads = {(t.repository, t.tag): _submit(pool, target.manifest_head, t.repository, t.tag, push=True)
                 for t in targets if t.tag} if shortcut or options.platforms or not options.force else {}
        if shortcut:
            resolved = source.manifest_head(ref.repository, ref.ref)
            if resolved is not None and _all_present(target, targets, resolved[0], heads):
                _count_present(target, resolved[0], options, result, pool)
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
        # Whether a target repository holds the image already (untagged, or under another tag) is
        # asked while the source's manifests are fetched, when the top digest is known by now.
        held = {repo: _submit(pool, target.manifest_head, repo, ref.digest, push=True)
                for repo in result.repositories} if not options.platforms and ref.digest else {}
        plan = plan_import(source, ref, platforms=options.platforms, limits=options.limits,
                           copy_foreign=options.copy_foreign, pool=pool)
        result.digest, result.media_type = plan.top.digest, plan.top.media_type
        result.source_digest = plan.source.digest or plan.top.digest
        result.manifests, result.foreign_skipped = len(plan.manifests), len(plan.foreign)
        if options.verify is not None:  # before anything is copied or tagged
            from .verify import require_signature

            result.verified = require_signature(source, plan, options.verify).to_dict()
        found = None
        if options.referrers is not None:
            from .referrers import check_no_conflict, copy_referrers, discover_referrers

            found = discover_referrers(source, plan.source, [m.digest for m in plan.manifests], options.referrers,
                                       options.limits, copy_foreign=options.copy_foreign)
        if options.platforms and found is None and _all_present(target, targets, plan.top.digest, heads):
            # What the platforms pick (a subset index is deterministic) is already in place: nothing to write.
            result.tags = [f"{t.repository}:{t.tag}" for t in targets if t.tag]
            result.seconds = time.monotonic() - started
            progress.phase = "done"
            on_progress(progress)
            return result
        if not options.force:
            _check_no_conflict(target, targets, plan.top.digest, heads)
            if found is not None:
                check_no_conflict(found, target, result.repositories)
        progress.phase = "copying"
        progress.blobs_total = len(plan.blobs) * len(result.repositories)
        progress.bytes_total = plan.total_bytes * len(result.repositories)
        on_progress(progress)
        first_repo: str | None = None
        for repo in result.repositories:
            present = held[repo].result() if repo in held and plan.top.digest == ref.digest else \
                target.manifest_head(repo, plan.top.digest, push=True)
            if present is None:
                # Same registry: mount from the source. Otherwise the target may still hold the blobs
                # under the source's path from an earlier default-target import; a mount from a
                # repository without the blob just opens the upload (distribution-spec "Mounting a
                # blob from another repository": 202), so the guess costs no extra request.
                mount_from = first_repo or (ref.repository if ref.repository != repo else None)
                # A download started with the upload's POST saves a round trip per blob, and is wasted
                # when the POST mounts the blob: likely from a repository this import just filled, or
                # when source and target are one registry.
                early = first_repo is None and source.registry != target.registry
                _copy_blobs(plan, repo, mount_from, source=source, target=target, pool=pool, result=result,
                            progress=progress, on_progress=on_progress, on_session=on_session, deadline=deadline,
                            concurrency=workers, reads=reads if early else None)
                *children, top = plan.manifests
                _put_manifests(pool, target, repo, children)
                if not any(t.tag for t in targets if t.repository == repo):
                    target.manifest_put(repo, top.digest, top)  # untagged: by digest only
            else:
                result.skipped += len(plan.blobs)
            first_repo = first_repo or repo
        if found is not None:  # the signatures are in place before the tags move
            result.referrers = copy_referrers(found, top=plan.top, source=source, source_repo=plan.source.repository,
                                              target=target, repositories=result.repositories,
                                              on_session=on_session).to_dict()
        progress.phase = "tagging"
        on_progress(progress)
        tags = [spec for spec in targets if spec.tag]
        for spec, future in [(spec, _submit(pool, target.manifest_put, spec.repository, spec.tag, plan.top))
                             for spec in tags]:
            future.result()
            result.tags.append(f"{spec.repository}:{spec.tag}")
    progress.phase = "done"
    on_progress(progress)
    result.seconds = time.monotonic() - started
    return result


def _submit(pool: ThreadPoolExecutor, fn: Callable[..., T], *args, **kwargs) -> Future[T]:
    """fn(*args, **kwargs) on the pool, in a copy of this context (the job id of log records and the
    import's span follow the work into the pool's threads)."""
    return pool.submit(contextvars.copy_context().run, fn, *args, **kwargs)


Heads = dict[tuple[str, str], "Future[tuple[str, str, int] | None]"]


def _count_present(target: RegistryClient, digest: str, options: CopyOptions, result: ImportResult,
                   pool: ThreadPoolExecutor) -> None:
    """Nothing to copy: count the image as it is, walking its manifests in the target (which holds them
    all, each verified by digest), so a re-import still reports true counts yet costs the source HEADs only."""
    # The target is trusted and nothing is transferred: the manifest limit still bounds the walk, the
    # public layer-size limit (a limit on transfers) does not apply.
    limits = Limits(max_manifests=options.limits.max_manifests)
    plan = plan_import(target, Reference(target.registry, result.repositories[0], None, digest),
                       limits=limits, copy_foreign=options.copy_foreign, pool=pool)
    result.digest, result.media_type = plan.top.digest, plan.top.media_type
    result.manifests, result.foreign_skipped = len(plan.manifests), len(plan.foreign)
    result.skipped = len(plan.blobs) * len(result.repositories)


def _held(target: RegistryClient, spec: TargetSpec, digest: str, heads: Heads) -> str | None:
    """The digest the target holds for a target spec (its tag, else the digest), or None."""
    asked = heads.get((spec.repository, spec.tag)) if spec.tag else None
    found = asked.result() if asked is not None else target.manifest_head(spec.repository, spec.tag or digest,
                                                                           push=True)
    return found[0] if found is not None else None


def _all_present(target: RegistryClient, targets: list[TargetSpec], digest: str, heads: Heads) -> bool:
    return all(_held(target, spec, digest, heads) == digest for spec in targets)


def _check_no_conflict(target: RegistryClient, targets: list[TargetSpec], digest: str, heads: Heads) -> None:
    """NoForce: fail before copying anything if a target tag already points elsewhere."""
    for spec in targets:
        if not spec.tag:
            continue
        found = _held(target, spec, digest, heads)
        if found is not None and found != digest:
            raise ConflictError(
                f"target tag {target.registry}/{spec.repository}:{spec.tag} already exists with digest {found} "
                f"(importing {digest}); use --force (mode Force) to overwrite it", target=str(spec))


def _put_manifests(pool: ThreadPoolExecutor, target: RegistryClient, repo: str, manifests: list) -> None:
    """PUT child manifests by digest (children before parents in `manifests`): the image manifests all
    at once, then any nested indexes in order, each after the manifests it lists."""
    images = [m for m in manifests if not m.is_index]
    for future in [_submit(pool, target.manifest_put, repo, m.digest, m) for m in images]:
        future.result()
    for manifest in manifests:
        if manifest.is_index:
            target.manifest_put(repo, manifest.digest, manifest)


class _NotStarted(Exception):
    """A blob transfer skipped because another one failed."""


def _copy_blobs(plan: Plan, repo: str, mount_from: str | None, *, source: RegistryClient, target: RegistryClient,
                pool: ThreadPoolExecutor, result: ImportResult, progress: Progress,
                on_progress: Callable[[Progress], None], on_session: SessionHook, deadline: float | None,
                concurrency: int = 1, reads: ThreadPoolExecutor | None = None) -> None:
    """`pool` runs `concurrency` blobs at once, at most LARGE_AT_ONCE of them large; with `reads`,
    downloads start beside the upload POSTs (blobcopy.copy_blob)."""
    large_at_once = max(1, min(concurrency, LARGE_AT_ONCE))
    gate = threading.BoundedSemaphore(large_at_once)
    lock = threading.Lock()

    def on_bytes(n: int) -> None:
        with lock:
            progress.bytes_done += n
        on_progress(progress)

    failed = threading.Event()

    def one(blob_digest: str) -> None:
        blob = plan.blobs[blob_digest]
        with gate if blob.size > SMALL_BLOB else contextlib.nullcontext():
            transfer(blob)

    def transfer(blob: Descriptor) -> None:
        if failed.is_set():
            raise _NotStarted  # a blob failed for good: the import fails, more transfers would be waste
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineReached("not started")  # replaced below by one error naming the progress
        try:
            with telemetry.span("blob", digest=blob.digest, size=blob.size, repository=repo) as span:
                outcome = copy_blob(blob, source=source, source_repo=plan.source.repository, target=target,
                                    target_repo=repo, mount_from=mount_from, on_bytes=on_bytes,
                                    on_session=on_session, reads=reads)
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

    # Largest first: the long transfers start early, the small ones (configs too) at once beside them,
    # and the large ones beyond LARGE_AT_ONCE after them (waiting at the gate then holds no small one up).
    by_size = sorted(plan.blobs, key=lambda d: -plan.blobs[d].size)
    large = [d for d in by_size if plan.blobs[d].size > SMALL_BLOB]
    order = large[:large_at_once] + [d for d in by_size if plan.blobs[d].size <= SMALL_BLOB] + large[large_at_once:]
    futures = [_submit(pool, one, digest) for digest in order]
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
