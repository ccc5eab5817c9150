"""Referrers: the signatures, SBOMs and attestations attached to what an import copies.

Found in the source for every manifest copied (the top one and each child of an index) and then,
recursively, for every referrer found (a signature on an SBOM):

1. the OCI 1.1 referrers API, `GET /v2/<name>/referrers/<digest>` (paginated, `artifactType`
   filter), when the source answers it;
2. else the referrers tag schema: the image index tagged `sha256-<hex>` (distribution-spec v1.1
   "Referrers Tag Schema"), which registries without the API (Distribution 2.8) hold;
3. and cosign's tag-based attachments `sha256-<hex>.sig`, `.att`, `.sbom` (cosign 2.x default).

A referrer's manifest is fetched by digest (verified) and must name the subject it was listed for:
a listing that says otherwise is not believed. In the target each referrer is pushed by digest,
blobs first, byte for byte (its `subject` intact). A target that indexes referrers itself says so
with `OCI-Subject` on the manifest PUT; for one that does not, the `sha256-<hex>` tag index is
merged: the entries already there (another tool's) are kept, ours are added, and it is written only
when something was added, so a re-run writes nothing. That index is the registry's bookkeeping, so
NoForce does not apply to it; cosign's attachment tags are tags like any other and it does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..auth import scopes_for
from ..values.cosign import signature_tag
from ..values.errors import ConflictError, LimitExceeded, ManifestError, NotFoundError
from ..values.media import INDEX_TYPES, Descriptor, Manifest, parse_manifest
from ..values.reference import Reference
from ..registry.client import RegistryClient
from .blobcopy import BlobOutcome, SessionHook, copy_blob
from .plan import Limits, Plan, plan_manifest

__all__ = ["COSIGN_SUFFIXES", "Referrer", "ReferrerOptions", "ReferrerStats", "Referrers", "ReferrerLister",
           "check_no_conflict", "copy_referrers", "discover_referrers"]

COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True, slots=True)
class ReferrerOptions:
    """`artifact_types` empty: every referrer. Otherwise an OCI 1.1 referrer is copied when its
    artifactType (else its config's media type) is listed, a cosign attachment when its layers'
    media type is (a .sig: application/vnd.dev.cosign.simplesigning.v1+json)."""

    artifact_types: tuple[str, ...] = ()

    def wants(self, types: Iterable[str | None]) -> bool:
        return not self.artifact_types or any(t in self.artifact_types for t in types if t)


@dataclass
class Referrer:
    subject: str  # the digest it is attached to
    manifest: Manifest
    plan: Plan  # its blobs (and, for an index, its children)
    found_by: str  # "referrers API" | "tag schema" | "cosign tag"
    tag: str | None = None  # a cosign attachment's tag (sha256-<hex>.sig); None for an OCI 1.1 referrer

    @property
    def artifact_type(self) -> str | None:
        return self.manifest.type_for_referrers

    def descriptor(self) -> dict:
        """Its entry in a referrers index (distribution-spec v1.1: artifactType, annotations)."""
        entry: dict = {"mediaType": self.manifest.media_type, "digest": self.manifest.digest,
                       "size": len(self.manifest.raw)}
        if self.artifact_type:
            entry["artifactType"] = self.artifact_type
        if self.manifest.annotations:
            entry["annotations"] = dict(self.manifest.annotations)
        return entry


@dataclass
class Referrers:
    items: list[Referrer] = field(default_factory=list)  # subjects before their referrers
    source_api: bool | None = None  # did the source answer the referrers API

    @property
    def tags(self) -> list[Referrer]:
        return [item for item in self.items if item.tag]


class ReferrerLister:
    """Who refers to a digest in one repository: the referrers API while the registry answers it
    (asked once per repository: a 404 means "use the tag schema"), else the tag schema's index."""

    def __init__(self, client: RegistryClient, repository: str, *, push: bool = False) -> None:
        self.client, self.repository, self.push = client, repository, push
        self.api: bool | None = None

    def supports_api(self, digest: str) -> bool:
        if self.api is None:
            self.api = self.client.referrers_list(self.repository, digest, push=self.push) is not None
        return self.api

    def referrers(self, digest: str, *, artifact_type: str | None = None) -> tuple[list[Descriptor], str]:
        if self.api is not False:
            listed = self.client.referrers_list(self.repository, digest, artifact_type=artifact_type, push=self.push)
            if listed is not None:
                self.api = True
                return listed, "referrers API"
            self.api = False
        return self._tag_schema(digest), "tag schema"

    def _tag_schema(self, digest: str) -> list[Descriptor]:
        index = self._get(signature_tag(digest, ""))
        return list(index.children) if index is not None and index.is_index else []

    def _get(self, tag: str) -> Manifest | None:
        scopes = [scopes_for(self.repository, "pull", "push")] if self.push else None
        try:
            return self.client.manifest_get(self.repository, tag, scopes=scopes)
        except NotFoundError:
            return None

    def attachment(self, digest: str, suffix: str) -> Manifest | None:
        """cosign's `sha256-<hex><suffix>` manifest: HEAD first (absent is the common case and costs
        no Docker Hub pull), then the bytes by the digest the HEAD named (verified)."""
        found = self.client.manifest_head(self.repository, signature_tag(digest, suffix), push=self.push)
        if found is None:
            return None
        scopes = [scopes_for(self.repository, "pull", "push")] if self.push else None
        try:
            return self.client.manifest_get(self.repository, found[0], scopes=scopes)
        except NotFoundError:
            return None


def discover_referrers(source: RegistryClient, ref: Reference, subjects: list[str], options: ReferrerOptions,
                       limits: Limits, *, copy_foreign: bool = False) -> Referrers:
    """Every referrer of `subjects` in the source repository, and theirs in turn."""
    lister = ReferrerLister(source, ref.repository)
    found = Referrers()
    seen = set(subjects)
    queue = list(dict.fromkeys(subjects))
    single = options.artifact_types[0] if len(options.artifact_types) == 1 else None

    def add(subject: str, manifest: Manifest, how: str, tag: str | None = None) -> None:
        if len(found.items) >= limits.max_manifests:
            raise LimitExceeded(f"{ref} has more than {limits.max_manifests} referrers (limit IMPORT_MAX_MANIFESTS="
                                f"{limits.max_manifests})", target="IMPORT_MAX_MANIFESTS")
        where = Reference(ref.registry, ref.repository, None, manifest.digest)
        plan = plan_manifest(source, where, manifest, limits=limits, copy_foreign=copy_foreign)
        found.items.append(Referrer(subject, manifest, plan, how, tag))
        seen.add(manifest.digest)
        queue.append(manifest.digest)

    while queue:
        subject = queue.pop(0)
        listed, how = lister.referrers(subject, artifact_type=single)
        for desc in listed:
            if desc.digest in seen or (desc.artifact_type and not options.wants([desc.artifact_type])):
                continue
            try:
                manifest = source.manifest_get(ref.repository, desc.digest)
            except NotFoundError:
                continue  # a stale entry of a tag-schema index: nothing to copy
            if manifest.subject != subject or not options.wants([manifest.type_for_referrers]):
                continue  # listed for this subject, but it does not say so itself: not believed
            add(subject, manifest, how)
        for suffix in COSIGN_SUFFIXES:
            attached = lister.attachment(subject, suffix)
            if attached is None or attached.digest in seen:
                continue
            if not options.wants([attached.type_for_referrers, *(b.media_type for b in attached.blobs[1:])]):
                continue
            add(subject, attached, "cosign tag", signature_tag(subject, suffix))
    found.source_api = lister.api
    return found


def check_no_conflict(found: Referrers, target: RegistryClient, repositories: list[str]) -> None:
    """NoForce for cosign's attachment tags: one the target holds with other content fails the import
    before anything is copied (it would drop the target's signatures). The referrers tag index is
    merged instead and never conflicts."""
    for repo in repositories:
        for item in found.tags:
            held = target.manifest_head(repo, item.tag or "", push=True)
            if held is not None and held[0] != item.manifest.digest:
                raise ConflictError(
                    f"target tag {target.registry}/{repo}:{item.tag} already exists with digest {held[0]} (importing "
                    f"{item.manifest.digest}, a cosign attachment of {item.subject}); use --force (mode Force) to "
                    "overwrite it", target=f"{repo}:{item.tag}")


@dataclass
class ReferrerStats:
    found: int = 0
    copied: int = 0  # referrer manifests pushed
    present: int = 0  # already in the target
    blobs: int = 0  # blobs transferred or mounted
    bytes: int = 0
    tags: list[str] = field(default_factory=list)  # cosign attachment tags set, repo:tag
    indexes: list[str] = field(default_factory=list)  # referrers tag indexes written, repo:tag
    source_api: bool | None = None
    target_api: bool | None = None

    def to_dict(self) -> dict:
        return {"found": self.found, "copied": self.copied, "present": self.present, "blobs": self.blobs,
                "bytes": self.bytes, "tags": self.tags, "indexTags": self.indexes,
                "sourceReferrersApi": self.source_api, "targetReferrersApi": self.target_api}


def copy_referrers(found: Referrers, *, top: Manifest, source: RegistryClient, source_repo: str,
                   target: RegistryClient, repositories: list[str],
                   on_session: SessionHook = lambda repo, loc: None) -> ReferrerStats:
    """Push every referrer into every target repository (see the module docstring); tags nothing
    but cosign attachment tags and referrers tag indexes, whose manifests are all present first."""
    stats = ReferrerStats(found=len(found.items), source_api=found.source_api)
    first_repo: str | None = None
    for repo in repositories:
        # The subject by digest first (a registry may want it before its referrers); no tag moves.
        if target.manifest_head(repo, top.digest, push=True) is None:
            target.manifest_put(repo, top.digest, top)
        indexed_by_target: bool | None = None
        unindexed: dict[str, list[Referrer]] = {}  # subject -> referrers the target did not index
        unknown: dict[str, list[Referrer]] = {}  # subject -> referrers already there (indexed or not)
        for item in found.items:
            if target.manifest_head(repo, item.manifest.digest, push=True) is None:
                for blob in item.plan.blobs.values():
                    outcome = copy_blob(blob, source=source, source_repo=source_repo, target=target, target_repo=repo,
                                        mount_from=first_repo, on_session=on_session)
                    if outcome is not BlobOutcome.SKIPPED:
                        stats.blobs += 1
                        stats.bytes += blob.size if outcome is BlobOutcome.COPIED else 0
                *children, _ = item.plan.manifests
                for child in children:
                    target.manifest_put(repo, child.digest, child)
                headers = target.manifest_put(repo, item.manifest.digest, item.manifest)
                stats.copied += 1
                if item.tag is None:
                    if headers.get("oci-subject"):
                        indexed_by_target = True
                    else:
                        indexed_by_target = False if indexed_by_target is None else indexed_by_target
                        unindexed.setdefault(item.subject, []).append(item)
            else:
                stats.present += 1
                if item.tag is None:
                    unknown.setdefault(item.subject, []).append(item)
            if item.tag:
                held = target.manifest_head(repo, item.tag, push=True)
                if held is None or held[0] != item.manifest.digest:
                    target.manifest_put(repo, item.tag, item.manifest)
                    stats.tags.append(f"{repo}:{item.tag}")
        if unknown and indexed_by_target is None:
            # Nothing was pushed this time: ask the target whether it answers the referrers API.
            indexed_by_target = ReferrerLister(target, repo, push=True).supports_api(next(iter(unknown)))
        stats.target_api = indexed_by_target if stats.target_api is None else stats.target_api
        if not indexed_by_target:
            for subject, items in unknown.items():
                unindexed.setdefault(subject, []).extend(items)
        for subject, items in unindexed.items():
            if _merge_tag_index(target, repo, subject, items):
                stats.indexes.append(f"{repo}:{signature_tag(subject, '')}")
        first_repo = first_repo or repo
    return stats


def _merge_tag_index(target: RegistryClient, repo: str, subject: str, items: list[Referrer]) -> bool:
    """Add `items` to the target's `sha256-<hex>` referrers index; True when it had to be written."""
    tag = signature_tag(subject, "")
    try:
        current = target.manifest_get(repo, tag, scopes=[scopes_for(repo, "pull", "push")])
    except NotFoundError:
        current = None
    if current is None:
        data: dict = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        media_type = OCI_INDEX
    else:
        if current.media_type not in INDEX_TYPES:
            raise ManifestError(f"target tag {target.registry}/{repo}:{tag} is a {current.media_type}, not the referrers "
                                "index (an image index) that tag is reserved for; refusing to overwrite it",
                                target=f"{repo}:{tag}")
        data = json.loads(current.raw)
        media_type = current.media_type
    entries: list = data["manifests"] if isinstance(data.get("manifests"), list) else []
    held = {entry.get("digest") for entry in entries if isinstance(entry, dict)}
    added = []
    for item in items:
        if item.manifest.digest not in held:
            held.add(item.manifest.digest)
            added.append(item.descriptor())
    if not added:
        return False
    data["manifests"] = entries + added  # every entry already there is kept as it was
    raw = json.dumps(data, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    target.manifest_put(repo, tag, parse_manifest(raw, media_type, digest, where=f"referrers index {repo}:{tag}"))
    return True
