"""Plan an import: resolve the source and walk its manifest tree (index -> manifests -> blobs)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import subset
from ..values.errors import LimitExceeded, ManifestError
from ..values.media import Descriptor, Manifest, Platform
from ..values.reference import Reference
from ..registry.client import RegistryClient

__all__ = ["Limits", "Plan", "plan_import", "plan_manifest"]

MAX_INDEX_DEPTH = 4  # indexes of indexes exist (attestations, nested platforms); deeper is hostile


@dataclass(frozen=True, slots=True)
class Limits:
    max_manifests: int = 50
    max_layer_bytes: int | None = None  # set when the source is a public registry
    max_layer_setting: str = "IMPORT_MAX_LAYER_BYTES_PUBLIC"


@dataclass
class Plan:
    source: Reference  # pinned to the source's digest (for a platform subset: the source index's)
    top: Manifest
    manifests: list[Manifest] = field(default_factory=list)  # children before parents; top last
    blobs: dict[str, Descriptor] = field(default_factory=dict)  # unique by digest, in first-seen order
    foreign: dict[str, Descriptor] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(d.size for d in self.blobs.values())


def plan_import(source: RegistryClient, ref: Reference, *, platforms: Sequence[Platform] = (), limits: Limits,
                copy_foreign: bool = False, pool: ThreadPoolExecutor | None = None) -> Plan:
    """Fetch every manifest under `ref` (by digest, verified) and list the blobs to move.

    `platforms`: one -> that platform's manifest out of an index; several -> a new index of just those
    (engine/subset.py), whose children are the source's; `plan.source.digest` stays the source's."""
    top = source.manifest_get(ref.repository, ref.ref)
    if ref.digest is None:
        ref = Reference(ref.registry, ref.repository, ref.tag, top.digest)
    subset.require_index(top, platforms, where=str(ref))
    if platforms and top.is_index:
        picked = subset.select(top, platforms, where=str(ref))
        if len(platforms) == 1:
            top = source.manifest_get(ref.repository, top.children[picked[0]].digest)
        else:
            top = subset.subset_index(top, picked, where=str(ref))
    plan = Plan(ref, top)
    _walk(source, ref, top, plan, limits, copy_foreign, depth=0, pool=pool)
    return plan


def plan_manifest(source: RegistryClient, ref: Reference, manifest: Manifest, *, limits: Limits,
                  copy_foreign: bool = False) -> Plan:
    """The plan under a manifest already fetched by digest (a referrer found while importing)."""
    plan = Plan(ref, manifest)
    _walk(source, ref, manifest, plan, limits, copy_foreign, depth=0, pool=None)
    return plan


def _walk(source: RegistryClient, ref: Reference, manifest: Manifest, plan: Plan, limits: Limits,
          copy_foreign: bool, *, depth: int, pool: ThreadPoolExecutor | None) -> None:
    # Parents are appended after their children, so the `depth` indexes above this one are not in
    # plan.manifests yet but count all the same (a nested index used to slip one manifest per level).
    if len(plan.manifests) + depth + 1 > limits.max_manifests:
        raise LimitExceeded(f"{ref} has more than {limits.max_manifests} manifests (limit IMPORT_MAX_MANIFESTS="
                            f"{limits.max_manifests})", target="IMPORT_MAX_MANIFESTS")
    if manifest.is_index:
        if depth >= MAX_INDEX_DEPTH:
            raise ManifestError(f"{ref}: indexes nested deeper than {MAX_INDEX_DEPTH} levels")
        wanted = list(dict.fromkeys(d.digest for d in manifest.children))
        if len(plan.manifests) + depth + len(wanted) + 1 > limits.max_manifests:
            raise LimitExceeded(f"{ref} has more than {limits.max_manifests} manifests (limit "
                                f"IMPORT_MAX_MANIFESTS={limits.max_manifests})", target="IMPORT_MAX_MANIFESTS")
        fetch = lambda digest: source.manifest_get(ref.repository, digest)  # noqa: E731
        children = list(pool.map(fetch, wanted)) if pool else [fetch(d) for d in wanted]
        for child in children:
            if any(m.digest == child.digest for m in plan.manifests):
                continue
            _walk(source, ref, child, plan, limits, copy_foreign, depth=depth + 1, pool=pool)
    else:
        for blob in manifest.blobs:
            if blob.foreign and not copy_foreign:
                plan.foreign.setdefault(blob.digest, blob)
                continue
            if limits.max_layer_bytes is not None and blob.size > limits.max_layer_bytes:
                raise LimitExceeded(
                    f"{ref}: blob {blob.digest} is {blob.size} bytes, over the limit for public registries "
                    f"({limits.max_layer_setting}={limits.max_layer_bytes})", target=limits.max_layer_setting)
            plan.blobs.setdefault(blob.digest, blob)
    plan.manifests.append(manifest)
