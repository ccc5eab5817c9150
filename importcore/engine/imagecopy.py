"""The copy engine: plan, check the targets, move blobs, push manifests bottom-up, then tag.

Nothing is tagged unless everything under it is present in the target: blobs first, child
manifests by digest, the top manifest, and only then the tags.

With a `deadline` (the function host's timeout, less a margin) no blob transfer starts after it:
the blobs in flight finish, then DeadlineReached says "retry me", and the next attempt skips every
blob the target already has.
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
from ..values.media import Descriptor, Platform
from .plan import Limits, Plan, plan_import
from .referrers import ReferrerOptions, check_no_conflict, copy_referrers, discover_referrers
from .verify import VerifyPolicy, require_signature
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

    def run(self, ref: Reference) -> ImportResult:
        self._report()
        options = self.options
        # Cheapest path first: HEADs only (no Docker Hub pull is spent) when the target already has it.
        # Verification and referrers need the source's signatures and attachments, so not for them.
        if not options.platforms and options.referrers is None and options.verify is None:
            resolved = self.source.manifest_head(ref.repository, ref.ref)
            if resolved is not None and _all_present(self.target, self.targets, resolved[0]):
                _count_present(self.target, resolved[0], options, self.result)
                self.result.source_digest = self.result.digest
                return self._done(already_there=True)
            if resolved is not None and ref.digest is None and resolved[0].startswith("sha256:"):
                # Fetch what the HEAD named, by digest: the bytes are then verified against it, and a tag
                # moved in between cannot make the NoForce check and the copy disagree.
                ref = Reference(ref.registry, ref.repository, ref.tag, resolved[0])
        with ThreadPoolExecutor(max_workers=max(1, options.concurrency), thread_name_prefix="blob") as pool:
            plan = plan_import(self.source, ref, platforms=options.platforms, limits=options.limits,
                               copy_foreign=options.copy_foreign, pool=pool)
            self._describe(plan)
            if options.verify is not None:  # before anything is copied or tagged
                self.result.verified = require_signature(self.source, plan, options.verify).to_dict()
            found = None if options.referrers is None else discover_referrers(
                self.source, plan.source, [m.digest for m in plan.manifests], options.referrers, options.limits,
                copy_foreign=options.copy_foreign)
            if options.platforms and found is None and _all_present(self.target, self.targets, plan.top.digest):
                # What the platforms pick (a subset index is deterministic) is already in place: nothing to write.
                return self._done(already_there=True)
            if not options.force:
                _check_no_conflict(self.target, self.targets, plan.top.digest)
                if found is not None:
                    check_no_conflict(found, self.target, self.result.repositories)
            self._copy_repositories(plan, pool)
            if found is not None:  # the signatures are in place before the tags move
                self.result.referrers = copy_referrers(
                    found, top=plan.top, source=self.source, source_repo=plan.source.repository, target=self.target,
                    repositories=self.result.repositories, on_session=self.on_session).to_dict()
            self._tag(plan)
        return self._done(already_there=False)

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
            if self.target.manifest_head(repo, plan.top.digest, push=True) is None:
                # Same registry: mount from the source. Otherwise the target may still hold the blobs
                # under the source's path from an earlier default-target import; a mount from a
                # repository without the blob just opens the upload (distribution-spec "Mounting a
                # blob from another repository": 202), so the guess costs no extra request.
                mount_from = first_repo or (source_repo if source_repo != repo else None)
                self._copy_blobs(plan, repo, mount_from, pool)
                self._put_manifests(plan, repo)
            else:
                self.result.skipped += len(plan.blobs)
            first_repo = first_repo or repo

    def _put_manifests(self, plan: Plan, repo: str) -> None:
        *children, top = plan.manifests
        for manifest in children:
            self.target.manifest_put(repo, manifest.digest, manifest)
        if not any(t.tag for t in self.targets if t.repository == repo):
            self.target.manifest_put(repo, top.digest, top)  # untagged: by digest only

    def _tag(self, plan: Plan) -> None:
        self.progress.phase = "tagging"
        self._report()
        for spec in self.targets:
            if spec.tag:
                self.target.manifest_put(spec.repository, spec.tag, plan.top)
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

    def _copy_blobs(self, plan: Plan, repo: str, mount_from: str | None, pool: ThreadPoolExecutor) -> None:
        failed = threading.Event()  # set by the first transfer that fails for good

        def task(digest: str) -> None:
            self._copy_one(plan.blobs[digest], plan, repo, mount_from, failed)

        # Largest first: the long transfers start early and the small ones fill the gaps.
        order = sorted(plan.blobs, key=lambda d: -plan.blobs[d].size)
        # Each task runs in a copy of this context: the job id (log records) and the import's span
        # (the parent of the blob spans) follow the work into the pool's threads.
        futures = [pool.submit(contextvars.copy_context().run, task, digest) for digest in order]
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
                  failed: threading.Event) -> None:
        if failed.is_set():
            raise _NotStarted  # a blob failed for good: the import fails, more transfers would be waste
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineReached("not started")  # replaced by one error naming the progress
        try:
            with telemetry.span("blob", digest=blob.digest, size=blob.size, repository=repo) as span:
                outcome = copy_blob(blob, source=self.source, source_repo=plan.source.repository, target=self.target,
                                    target_repo=repo, mount_from=mount_from, on_bytes=self._on_bytes,
                                    on_session=self.on_session)
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


def _count_present(target: RegistryClient, digest: str, options: CopyOptions, result: ImportResult) -> None:
    """Nothing to copy: count the image as it is, walking its manifests in the target (which holds them
    all, each verified by digest), so a re-import still reports true counts yet costs the source HEADs only."""
    # The target is trusted and nothing is transferred: the manifest limit still bounds the walk, the
    # public layer-size limit (a limit on transfers) does not apply.
    limits = Limits(max_manifests=options.limits.max_manifests)
    plan = plan_import(target, Reference(target.registry, result.repositories[0], None, digest),
                       limits=limits, copy_foreign=options.copy_foreign)
    result.digest, result.media_type = plan.top.digest, plan.top.media_type
    result.manifests, result.foreign_skipped = len(plan.manifests), len(plan.foreign)
    result.skipped = len(plan.blobs) * len(result.repositories)


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
