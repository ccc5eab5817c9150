"""Media types, descriptors, platforms and manifest parsing (pure: bytes in, values out).

Manifests are parsed only to learn what they reference; the bytes themselves are what gets
copied, never a re-serialisation (OCI image-spec manifest.md, descriptor.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .errors import LimitExceeded, ManifestError, UsageError
from .reference import parse_digest

__all__ = [
    "ACCEPT",
    "EMPTY_JSON",
    "Descriptor",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "MAX_MANIFEST_BYTES",
    "Manifest",
    "Platform",
    "parse_manifest",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_ARTIFACT = "application/vnd.oci.artifact.manifest.v1+json"  # withdrawn from image-spec 1.1 rc, still seen
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST, OCI_ARTIFACT})
_KNOWN_TYPES = INDEX_TYPES | MANIFEST_TYPES | DOCKER_SCHEMA1
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST, OCI_ARTIFACT])
# Layers the image's publisher says must not be redistributed (Windows base layers):
# their blobs live at `urls`, and registries accept manifests without them.
FOREIGN_LAYER_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})
EMPTY_JSON = "application/vnd.oci.empty.v1+json"  # image-spec 1.1 "Guidance for an Empty Descriptor"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what Distribution and ACR accept as a manifest body


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/") if isinstance(text, str) else []
        if len(parts) not in (2, 3) or not all(p and p.isascii() and p.replace("-", "").replace("_", "").isalnum()
                                               for p in parts):
            raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64/v8")
        return cls(parts[0].lower(), parts[1].lower(), parts[2].lower() if len(parts) == 3 else None)

    @classmethod
    def from_json(cls, data: object) -> Platform | None:
        if not isinstance(data, dict) or not isinstance(data.get("os"), str):
            return None
        arch, variant = data.get("architecture"), data.get("variant")
        return cls(data["os"], arch if isinstance(arch, str) else "", variant if isinstance(variant, str) else None)

    def matches(self, other: Platform | None) -> bool:
        """Does the image for `other` satisfy a request for `self`? (arm64 means arm64/v8, arm arm/v7.)"""
        if other is None or (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return _norm_variant(self) == _norm_variant(other) or self.variant is None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _norm_variant(p: Platform) -> str | None:
    # containerd platforms.Normalize: arm64 without a variant is v8, arm without one is v7.
    if p.architecture == "arm64" and p.variant in (None, "v8"):
        return "v8"
    if p.architecture == "arm" and p.variant is None:
        return "v7"
    return p.variant


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    platform: Platform | None = None
    artifact_type: str | None = None  # OCI 1.1: in a referrers list, the referrer's type
    annotations: tuple[tuple[str, str], ...] = ()  # string pairs only (cosign keeps its signature here)

    @property
    def foreign(self) -> bool:
        return self.media_type in FOREIGN_LAYER_TYPES

    def annotation(self, key: str) -> str | None:
        return next((v for k, v in self.annotations if k == key), None)

    @classmethod
    def from_json(cls, data: object, *, where: str) -> Descriptor:
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: a descriptor must be an object")
        media_type, size = data.get("mediaType"), data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestError(f"{where}: descriptor has no mediaType")
        try:
            digest = parse_digest(data.get("digest"), what=f"digest in {where}")
        except UsageError as exc:
            raise ManifestError(exc.message) from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{where}: descriptor {digest} has an invalid size {size!r}")
        urls = data.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ManifestError(f"{where}: descriptor {digest} has invalid urls")
        return cls(media_type, digest, size, tuple(urls), Platform.from_json(data.get("platform")),
                   _text(data.get("artifactType")), _annotations(data.get("annotations")))


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a manifest references; `raw` is kept so it can be pushed byte-for-byte."""

    raw: bytes
    media_type: str
    digest: str
    children: tuple[Descriptor, ...] = ()  # for indexes: the manifests it lists
    blobs: tuple[Descriptor, ...] = field(default=())  # for manifests: config first, then layers
    subject: str | None = None  # OCI 1.1: the digest of the manifest this one refers to (a referrer)
    artifact_type: str | None = None  # OCI 1.1 `artifactType`
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def type_for_referrers(self) -> str | None:
        """What the referrers API lists as this manifest's artifactType: its own, else (an image
        manifest) its config's media type, else none (distribution-spec v1.1 "Listing Referrers")."""
        if self.artifact_type:
            return self.artifact_type
        if not self.is_index and self.blobs and self.media_type != OCI_ARTIFACT:
            return self.blobs[0].media_type
        return None


def parse_manifest(raw: bytes, content_type: str | None, digest: str, *, where: str) -> Manifest:
    """Parse and sanity-check a manifest body; `where` names it in errors."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise LimitExceeded(f"{where}: manifest is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: `[[[[...` from a hostile server
        raise ManifestError(f"{where}: manifest is not valid JSON") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: manifest is not a JSON object")
    declared = data.get("mediaType")
    header = (content_type or "").split(";")[0].strip().lower() or None
    if declared is not None and not isinstance(declared, str):
        raise ManifestError(f"{where}: mediaType must be a string")
    if declared and header and header not in ("application/json", "application/octet-stream") and header != declared:
        raise ManifestError(f"{where}: body says mediaType {declared} but the registry sent Content-Type {header}")
    # A generic Content-Type (application/json, ...) says nothing: then the structure decides.
    media_type = declared or (header if header in _KNOWN_TYPES else None) or _guess(data)
    if media_type in DOCKER_SCHEMA1 or data.get("schemaVersion") == 1:
        raise ManifestError(f"{where}: Docker schema 1 manifests are deprecated and not supported")
    if "manifests" in data and ("layers" in data or "config" in data):
        raise ManifestError(f"{where}: manifest has both 'manifests' and 'layers'/'config'; refusing an ambiguous manifest")
    # The type must agree with the structure, or an index would be copied as an image without
    # its children (or the reverse): the image-spec "manifest confusion" class of bugs.
    if media_type in INDEX_TYPES and ("layers" in data or "config" in data or "blobs" in data):
        raise ManifestError(f"{where}: an index ({media_type}) must not have 'layers', 'config' or 'blobs'")
    if media_type in MANIFEST_TYPES and "manifests" in data:
        raise ManifestError(f"{where}: an image manifest ({media_type}) must not have 'manifests'")
    subject, artifact_type = _subject(data.get("subject"), where=where), _text(data.get("artifactType"))
    annotations = _annotations(data.get("annotations"))
    if media_type in INDEX_TYPES:
        children = _descriptors(data.get("manifests"), where=f"{where} manifests")
        return Manifest(raw, media_type, digest, children=children, subject=subject, artifact_type=artifact_type,
                        annotations=annotations)
    if media_type in MANIFEST_TYPES or "layers" in data or "blobs" in data:
        blobs: list[Descriptor] = []
        if "config" in data:
            blobs.append(Descriptor.from_json(data["config"], where=f"{where} config"))
        blobs.extend(_descriptors(data.get("layers", data.get("blobs", [])), where=f"{where} layers"))
        return Manifest(raw, media_type, digest, blobs=tuple(blobs), subject=subject, artifact_type=artifact_type,
                        annotations=annotations)
    raise ManifestError(f"{where}: unsupported manifest media type {media_type!r}")


def _guess(data: dict) -> str:
    # OCI allows mediaType to be absent; the structure tells which kind it is.
    return OCI_INDEX if "manifests" in data else OCI_MANIFEST


def _descriptors(items: object, *, where: str) -> tuple[Descriptor, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ManifestError(f"{where}: must be a list")
    return tuple(Descriptor.from_json(item, where=f"{where}[{i}]") for i, item in enumerate(items))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _annotations(value: object) -> tuple[tuple[str, str], ...]:
    # Annotations are a string map (image-spec annotations.md); anything else is ignored, not fatal:
    # they never decide what is copied.
    if not isinstance(value, dict):
        return ()
    return tuple((k, v) for k, v in value.items() if isinstance(k, str) and isinstance(v, str))


def _subject(value: object, *, where: str) -> str | None:
    """The digest of a referrer's `subject` (image-spec manifest.md). Only the digest is needed, and
    cosign's own spec shows a subject without a size, so size and mediaType are not required here."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: subject must be a descriptor")
    try:
        return parse_digest(str(value.get("digest") or ""), what=f"subject digest in {where}")
    except UsageError as exc:
        raise ManifestError(exc.message) from None
