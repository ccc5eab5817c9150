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

from ..observe import telemetry
from .blobcopy import SMALL_BLOB, BlobOutcome, SessionHook, copy_blob
from ..values.errors import ConflictError, DeadlineReached
from ..values.media import Descriptor, Manifest, Platform
from .plan import Limits, Plan, plan_import
from ..values.reference import Reference, TargetSpec
from ..registry.client import RegistryClient

if TYPE_CHECKING:  # imported when an import asks for them: they bring `cryptography` (~10 % of start-up)
    from .referrers import ReferrerOptions
    from .verify import VerifyPolicy

__all__ = ["CopyOptions", "ImportResult", "Progress", "connections_for", "copy_image"]

T = TypeVar("T")
# Of the blobs in flight (CopyOptions.concurrency), at most this many large ones (> SMALL_BLOB): they
# share one link and the registries' CPU (bench/ scenario 1: 4 and 8 at once alike on loopback; over
# a 100 ms link 8 save a wave of four round trips, scenario 7), while small blobs are round trips more
# than bytes, and want many in flight over a WAN.
LARGE_AT_ONCE = 8


def connections_for(concurrency: int) -> int:
    """Connections an import keeps open at most: each blob in flight may hold one to the source and
    one to the target at once (its download streaming into its upload)."""
    return 2 * concurrency


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


def copy_image(*, source: RegistryClient, ref: Reference, target: RegistryClient, targets: list[TargetSpec],
               options: CopyOptions, on_progress: Callable[[Progress], None] = lambda p: None,
               on_session: SessionHook = lambda repo, loc: None, deadline: float | None = None) -> ImportResult:
    """Import `ref` from `source` into `targets` of `target`; raises an ImporterError on failure.

    `deadline` (time.monotonic()): no blob transfer starts after it; see DeadlineReached."""
    return _ImageCopy(source=source, target=target, targets=targets, options=options, on_progress=on_progress,
                      on_session=on_session, deadline=deadline).run(ref)


class _ImageCopy:
    """One copy_image call: its clients, options and callbacks, and the progress and result it builds."""

    def __init__(self, *, source: RegistryClient, target: RegistryClient, targets: list[TargetSpec],
                 options: CopyOptions, on_progress: Callable[[Progress], None], on_session: SessionHook,
                 deadline: float | None) -> None:
        self.source, self.target, self.targets, self.options = source, target, targets, options
        self.on_progress, self.on_session, self.deadline = on_progress, on_session, deadline
        self.started = time.monotonic()
        self.progress = Progress()
        self.result = ImportResult(repositories=sorted({t.repository for t in targets}))
        self._lock = threading.Lock()  # progress and result, from the pool's threads
        self._pool: ThreadPoolExecutor  # run()'s: blobs and the requests issued side by side
        self._reads: ThreadPoolExecutor  # run()'s: downloads started beside their upload POSTs
        self._heads: dict[tuple[str, str], Future[tuple[str, str, int] | None]] = {}  # target tags' HEADs
        self._held: dict[str, Future[tuple[str, str, int] | None]] = {}  # target repositories' HEAD of the top

    def run(self, ref: Reference) -> ImportResult:
        self._report()
        options = self.options
        # Cheapest path first: HEADs only (no Docker Hub pull is spent) when the target already has it.
        # Verification and referrers need the source's signatures and attachments, so not for them.
        shortcut = not options.platforms and options.referrers is None and options.verify is None
        workers = max(1, options.concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blob") as pool, \
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read") as reads:
            self._pool, self._reads = pool, reads
            # The target tags' HEADs go out with the source's (a no-op's check is one round trip), and
            # the subset and NoForce checks below read the same answers.
            if shortcut or options.platforms or not options.force:
                self._heads = {(t.repository, t.tag): self._submit(self.target.manifest_head, t.repository, t.tag,
                                                                   push=True) for t in self.targets if t.tag}
            if shortcut:
                resolved = self.source.manifest_head(ref.repository, ref.ref)
                if resolved is not None and self._all_present(resolved[0]):
                    _count_present(self.target, resolved[0], options, self.result, pool)
                    self.result.source_digest = self.result.digest
                    return self._done(already_there=True)
                if resolved is not None and ref.digest is None and resolved[0].startswith("sha256:"):
                    # Fetch what the HEAD named, by digest: the bytes are then verified against it, and a tag
                    # moved in between cannot make the NoForce check and the copy disagree.
                    ref = Reference(ref.registry, ref.repository, ref.tag, resolved[0])
            if not options.platforms and ref.digest:
                # Whether a target repository holds the image already (untagged, or under another tag)
                # is asked while the source's manifests are fetched.
                self._held = {repo: self._submit(self.target.manifest_head, repo, ref.digest, push=True)
                              for repo in self.result.repositories}
            plan = plan_import(self.source, ref, platforms=options.platforms, limits=options.limits,
                               copy_foreign=options.copy_foreign, pool=pool)
            self._describe(plan)
            found = None
            if options.verify is not None:  # before anything is copied or tagged
                from .verify import require_signature

                self.result.verified = require_signature(self.source, plan, options.verify).to_dict()
            if options.referrers is not None:
                from .referrers import discover_referrers

                found = discover_referrers(self.source, plan.source, [m.digest for m in plan.manifests],
                                           options.referrers, options.limits, copy_foreign=options.copy_foreign)
            if options.platforms and found is None and self._all_present(plan.top.digest):
                # What the platforms pick (a subset index is deterministic) is already in place: nothing to write.
                return self._done(already_there=True)
            if not options.force:
                self._check_no_conflict(plan.top.digest)
                if found is not None:
                    from .referrers import check_no_conflict

                    check_no_conflict(found, self.target, self.result.repositories)
            self._copy_repositories(plan, pool)
            if found is not None:  # the signatures are in place before the tags move
                from .referrers import copy_referrers

                self.result.referrers = copy_referrers(
                    found, top=plan.top, source=self.source, source_repo=plan.source.repository, target=self.target,
                    repositories=self.result.repositories, on_session=self.on_session).to_dict()
            self._tag(plan)
        return self._done(already_there=False)

    def _submit(self, fn: Callable[..., T], *args, **kwargs) -> Future[T]:
        """fn(*args, **kwargs) on the pool, in a copy of this context: the job id (log records) and the
        import's span (the parent of the blob spans) follow the work into the pool's threads."""
        return self._pool.submit(contextvars.copy_context().run, fn, *args, **kwargs)

    def _target_digest(self, spec: TargetSpec, digest: str) -> str | None:
        """The digest the target holds for a target spec (its tag, else `digest`), or None."""
        asked = self._heads.get((spec.repository, spec.tag)) if spec.tag else None
        found = asked.result() if asked is not None else \
            self.target.manifest_head(spec.repository, spec.tag or digest, push=True)
        return found[0] if found is not None else None

    def _all_present(self, digest: str) -> bool:
        return all(self._target_digest(spec, digest) == digest for spec in self.targets)

    def _check_no_conflict(self, digest: str) -> None:
        """NoForce: fail before copying anything if a target tag already points elsewhere."""
        for spec in self.targets:
            if not spec.tag:
                continue
            found = self._target_digest(spec, digest)
            if found is not None and found != digest:
                raise ConflictError(
                    f"target tag {self.target.registry}/{spec.repository}:{spec.tag} already exists with digest "
                    f"{found} (importing {digest}); use --force (mode Force) to overwrite it", target=str(spec))

    def _describe(self, plan: Plan) -> None:
        result = self.result
        result.digest, result.media_type = plan.top.digest, plan.top.media_type
        result.source_digest = plan.source.digest or plan.top.digest
        result.manifests, result.foreign_skipped = len(plan.manifests), len(plan.foreign)

    def _copy_repositories(self, plan: Plan, pool: ThreadPoolExecutor) -> None:
        """Blobs, then child manifests (and an untagged top) into every target repository."""
        repositories = self.result.repositories
        self.progress.phase = "copying"
        self.progress.blobs_total = len(plan.blobs) * len(repositories)
        self.progress.bytes_total = plan.total_bytes * len(repositories)
        self._report()
        source_repo = plan.source.repository
        first_repo: str | None = None
        for repo in repositories:
            asked = self._held.get(repo) if plan.top.digest == plan.source.digest else None
            present = asked.result() if asked is not None else \
                self.target.manifest_head(repo, plan.top.digest, push=True)
            if present is None:
                # Same registry: mount from the source. Otherwise the target may still hold the blobs
                # under the source's path from an earlier default-target import; a mount from a
                # repository without the blob just opens the upload (distribution-spec "Mounting a
                # blob from another repository": 202), so the guess costs no extra request.
                mount_from = first_repo or (source_repo if source_repo != repo else None)
                # A download started with the upload's POST saves a round trip per blob, and is wasted
                # when the POST mounts the blob: likely from a repository this import just filled, or
                # when source and target are one registry.
                early = first_repo is None and self.source.registry != self.target.registry
                self._copy_blobs(plan, repo, mount_from, pool, reads=self._reads if early else None)
                self._put_manifests(plan, repo)
            else:
                self.result.skipped += len(plan.blobs)
            first_repo = first_repo or repo

    def _put_manifests(self, plan: Plan, repo: str) -> None:
        """Child manifests by digest (children before parents in plan.manifests): the image manifests all
        at once, then any nested indexes in order, each after the manifests it lists."""
        *children, top = plan.manifests
        images: list[Manifest] = [m for m in children if not m.is_index]
        for future in [self._submit(self.target.manifest_put, repo, m.digest, m) for m in images]:
            future.result()
        for manifest in children:
            if manifest.is_index:
                self.target.manifest_put(repo, manifest.digest, manifest)
        if not any(t.tag for t in self.targets if t.repository == repo):
            self.target.manifest_put(repo, top.digest, top)  # untagged: by digest only

    def _tag(self, plan: Plan) -> None:
        self.progress.phase = "tagging"
        self._report()
        tagged = [spec for spec in self.targets if spec.tag]
        for spec, put in [(spec, self._submit(self.target.manifest_put, spec.repository, spec.tag, plan.top))
                          for spec in tagged]:
            put.result()
            self.result.tags.append(f"{spec.repository}:{spec.tag}")

    def _done(self, *, already_there: bool) -> ImportResult:
        if already_there:
            self.result.tags = [f"{t.repository}:{t.tag}" for t in self.targets if t.tag]
        self.result.seconds = time.monotonic() - self.started
        self.progress.phase = "done"
        self._report()
        return self.result

    def _report(self) -> None:
        self.on_progress(self.progress)

    # -- blobs, in the pool --------------------------------------------------------------------------

    def _copy_blobs(self, plan: Plan, repo: str, mount_from: str | None, pool: ThreadPoolExecutor, *,
                    reads: ThreadPoolExecutor | None = None) -> None:
        """`pool` runs CopyOptions.concurrency blobs at once, at most LARGE_AT_ONCE of them large; with
        `reads`, downloads start beside the upload POSTs (blobcopy.copy_blob)."""
        failed = threading.Event()  # set by the first transfer that fails for good
        at_once = max(1, min(self.options.concurrency, LARGE_AT_ONCE))
        gate = threading.BoundedSemaphore(at_once)

        def task(digest: str) -> None:
            blob = plan.blobs[digest]
            with gate if blob.size > SMALL_BLOB else contextlib.nullcontext():
                self._copy_one(blob, plan, repo, mount_from, failed, reads)

        # Largest first: the long transfers start early, the small ones (configs too) at once beside
        # them, and the large ones beyond LARGE_AT_ONCE after those (waiting at the gate then holds no
        # small one up).
        by_size = sorted(plan.blobs, key=lambda d: -plan.blobs[d].size)
        large = [d for d in by_size if plan.blobs[d].size > SMALL_BLOB]
        order = large[:at_once] + [d for d in by_size if plan.blobs[d].size <= SMALL_BLOB] + large[at_once:]
        futures = [self._submit(task, digest) for digest in order]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        wait(pending)  # the transfers in flight finish (or fail) first
        errors = [error for f in futures if f.done() and not f.cancelled() and (error := f.exception()) is not None]
        for error in errors:
            if not isinstance(error, (DeadlineReached, _NotStarted)):
                raise error  # a real failure says more than "out of time"
        if errors:
            stopped = DeadlineReached(
                f"stopped before the function timeout with {self.progress.blobs_done} of {self.progress.blobs_total} "
                f"blobs in {self.target.registry}/{repo}; the next attempt continues with the rest "
                "(IMPORT_FUNCTION_TIMEOUT_SECONDS, IMPORT_DEADLINE_MARGIN_SECONDS)")
            stopped.copied = self.result.copied + self.result.mounted
            raise stopped

    def _copy_one(self, blob: Descriptor, plan: Plan, repo: str, mount_from: str | None,
                  failed: threading.Event, reads: ThreadPoolExecutor | None) -> None:
        if failed.is_set():
            raise _NotStarted  # a blob failed for good: the import fails, more transfers would be waste
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineReached("not started")  # replaced by one error naming the progress
        try:
            with telemetry.span("blob", digest=blob.digest, size=blob.size, repository=repo) as span:
                outcome = copy_blob(blob, source=self.source, source_repo=plan.source.repository, target=self.target,
                                    target_repo=repo, mount_from=mount_from, on_bytes=self._on_bytes,
                                    on_session=self.on_session, reads=reads)
                if span is not None:
                    span.set_attribute("outcome", outcome.value)
        except BaseException:
            failed.set()
            raise
        self._count(blob, outcome)

    def _on_bytes(self, n: int) -> None:
        with self._lock:
            self.progress.bytes_done += n
        self._report()

    def _count(self, blob: Descriptor, outcome: BlobOutcome) -> None:
        with self._lock:
            self.progress.blobs_done += 1
            if outcome is BlobOutcome.COPIED:
                self.result.copied += 1
                self.result.bytes += blob.size
            else:
                if outcome is BlobOutcome.MOUNTED:
                    self.result.mounted += 1
                else:
                    self.result.skipped += 1
                self.progress.bytes_done += blob.size  # skipped or mounted: done without transfer
        self._report()


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


class _NotStarted(Exception):
    """A blob transfer skipped because another one failed.

    Private and outside the tree on purpose: it only travels from a pool task to _copy_blobs through
    its future, and _copy_blobs never lets it out (a real error, or DeadlineReached, is raised instead)."""
