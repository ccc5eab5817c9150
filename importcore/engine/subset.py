"""Platform selection out of an index, and the platform-subset index: the one manifest this importer
authors instead of copying (pure: manifests in, manifests out).

`select` picks, for each platform asked for, the first child of the index that matches it (the same
matching as a single `--platform`: `linux/arm64` is `linux/arm64/v8`, `linux/arm` is `linux/arm/v7`).
Attestations and other entries that are not images for a platform (`unknown/unknown`, as buildkit writes
them, or any entry annotated `vnd.docker.reference.type`) are never picked.

`subset_index` writes the new index for several platforms. Its format, so that anyone can rebuild it and
get the same digest:

- one JSON object, compact (no whitespace, `,` and `:` separators), UTF-8, no trailing newline;
- its keys in this order: `schemaVersion` (the source index's value; left out when the source has none),
  `mediaType` (the source index's media type: an OCI index stays an OCI index, a Docker manifest list
  stays a manifest list), `manifests`, `annotations` (the source index's, only when it has them);
- `manifests`: the chosen children's descriptor objects exactly as the source index has them (every
  field: mediaType, digest, size, platform, annotations, urls, ...; keys in the source's order), in the
  source index's order, each source entry at most once;
- nothing else of the source index is carried over (no `subject`, no `artifactType`): the subset is a
  new index, not a referrer of what the source index referred to.

The same source index and the same chosen children always give the same bytes, hence the same digest:
importing a subset again finds it in place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from ..values.errors import ManifestError, NotFoundError, UsageError
from ..values.media import Descriptor, Manifest, Platform, parse_manifest

__all__ = ["REFERENCE_TYPE_ANNOTATION", "require_index", "select", "subset_index"]

REFERENCE_TYPE_ANNOTATION = "vnd.docker.reference.type"  # buildkit: "attestation-manifest"


def select(index: Manifest, platforms: Sequence[Platform], *, where: str) -> list[int]:
    """Positions in `index.children` of the children `platforms` pick, in the index's order, each once.

    A platform no image in the index matches is a NotFoundError naming it and the platforms offered;
    nothing has been copied when it is raised."""
    entries = _entries(index, json.loads(index.raw), where=where)
    eligible = [i for i, child in enumerate(index.children) if _is_platform_image(child, entries[i])]
    picked: set[int] = set()
    missing: list[Platform] = []
    for platform in platforms:
        hit = next((i for i in eligible if platform.matches(index.children[i].platform)), None)
        if hit is None:
            missing.append(platform)
        else:
            picked.add(hit)
    if missing:
        offered = ", ".join(sorted({str(index.children[i].platform) for i in eligible})) or "none"
        asked = ", ".join(str(p) for p in missing)
        noun = "platform" if len(missing) == 1 else "platforms"
        raise NotFoundError(f"{where}: no manifest for {noun} {asked} (the index offers: {offered})",
                            status=404, codes=("MANIFEST_UNKNOWN",),
                            target="platform" if len(platforms) == 1 else "platforms")
    return sorted(picked)


def require_index(manifest: Manifest, platforms: Sequence[Platform], *, where: str) -> None:
    """Several platforms need an index to choose from; a single image manifest is refused, not guessed at."""
    if len(platforms) > 1 and not manifest.is_index:
        asked = ", ".join(str(p) for p in platforms)
        raise UsageError(f"{where} is a single image ({manifest.media_type}), not an index: {len(platforms)} "
                         f"platforms ({asked}) need an index to choose from; ask for one platform or none",
                         target="platforms")


def subset_index(index: Manifest, positions: Sequence[int], *, where: str) -> Manifest:
    """The new index holding only the children at `positions` (see the module text for its format)."""
    data = json.loads(index.raw)  # parse_manifest accepted it: valid JSON, an object
    entries = _entries(index, data, where=where)
    body: dict[str, object] = {}
    if "schemaVersion" in data:
        body["schemaVersion"] = data["schemaVersion"]
    body["mediaType"] = index.media_type
    body["manifests"] = [entries[i] for i in sorted(dict.fromkeys(positions))]
    if "annotations" in data:
        body["annotations"] = data["annotations"]
    try:
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError) as exc:  # NaN/Infinity or a lone surrogate in the source's JSON
        raise ManifestError(f"{where}: cannot write a subset of this index: its JSON holds a value that "
                            f"has no strict JSON/UTF-8 form ({exc.__class__.__name__})") from None
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return parse_manifest(raw, index.media_type, digest, where=f"{where} (platform subset)")


def _entries(index: Manifest, data: dict, *, where: str) -> list[dict]:
    """The index's `manifests` as the JSON objects the source wrote (parallel to `index.children`)."""
    entries = data.get("manifests") or []
    if not isinstance(entries, list) or len(entries) != len(index.children) or \
            not all(isinstance(e, dict) for e in entries):
        raise ManifestError(f"{where}: the index's manifests do not match its parsed children")
    return entries


def _is_platform_image(child: Descriptor, entry: dict) -> bool:
    if child.platform is None or "unknown" in (child.platform.os, child.platform.architecture):
        return False
    annotations = entry.get("annotations")
    return not (isinstance(annotations, dict) and REFERENCE_TYPE_ANNOTATION in annotations)
