"""An import request as a value: what to copy, where to, how. Built by the CLI and the HTTP API."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ..auth import Credential
from ..values.errors import UsageError
from ..values.media import Platform
from ..values.reference import Reference, TargetSpec, parse_target
from ..values.resourceid import parse_resource_id

__all__ = ["ImportRequest", "check_targets", "parse_referrer_types", "parse_verify", "resolve_targets",
           "source_by_resource_id"]


@dataclass(frozen=True, slots=True)
class ImportRequest:
    source: Reference
    targets: tuple[TargetSpec, ...]
    target_registry: str
    force: bool = False
    platforms: tuple[Platform, ...] = ()  # one: that image out of an index; several: a new index of just those
    credential: Credential | None = None  # for the source registry
    copy_foreign: bool = False
    credential_ref: str | None = None  # a REGISTRY_AUTH_FILE entry to use instead of the source host's
    source_resource_id: str | None = None  # an ACR by ARM resource ID: its login server is looked up at run time
    include_referrers: bool = False  # copy signatures, SBOMs, attestations (engine/referrers.py)
    referrer_types: tuple[str, ...] = ()  # only these artifact types (empty: all)
    verify_keys: tuple[tuple[str, str], ...] = ()  # (name, PEM) of public keys given with the request
    verify_key_refs: tuple[str, ...] = ()  # names of keys the app holds (IMPORT_VERIFY_KEYS)

    @property
    def verifies(self) -> bool:
        return bool(self.verify_keys or self.verify_key_refs)

    def __post_init__(self) -> None:
        # The same platform asked for twice is asked for once (order kept: it names them in errors).
        object.__setattr__(self, "platforms", tuple(dict.fromkeys(self.platforms)))


def resolve_targets(source: Reference, images: list[str], repositories: list[str], *,
                    fields: tuple[str, str] = ("--image", "--repository")) -> tuple[TargetSpec, ...]:
    """az acr import's rule: --image repo[:tag] (tag defaults to the source's), --repository untagged,
    neither -> the source repository and tag. Errors name `fields` (the HTTP API passes its own)."""
    default_tag = source.tag if source.tag else (None if source.digest else "latest")
    targets: list[TargetSpec] = []
    for i, text in enumerate(images):
        try:
            spec = parse_target(text, default_tag=default_tag)
        except UsageError as exc:
            raise UsageError(exc.message, target=fields[0]) from None
        # parse_target falls back to "latest"; a digest-only source has no tag to inherit, and
        # inventing "latest" would silently move that tag, so the target must name one.
        if default_tag is None and ":" not in text.rpartition("/")[2]:
            raise UsageError(f"target {text!r} needs a tag: the source is given by digest only",
                             target=f"{fields[0]}[{i}]")
        targets.append(spec)
    for text in repositories:
        try:
            targets.append(parse_target(text, default_tag=None, untagged=True))
        except UsageError as exc:
            raise UsageError(exc.message, target=fields[1]) from None
    if not targets:
        # the source repository path as it is (docker.io/library/x -> library/x)
        if source.digest and not source.tag:
            targets.append(TargetSpec(source.repository, None))  # by digest only: untagged
        else:
            targets.append(TargetSpec(source.repository, source.tag or "latest"))
    return tuple(dict.fromkeys(targets))


def check_targets(targets: tuple[TargetSpec, ...], target_registry: str, *, field: str = "--image") -> None:
    """Refuse `myacr.azurecr.io/app:1` as a target in myacr.azurecr.io: it would become a repository
    named "myacr.azurecr.io/app". (Other dotted first components, e.g. a `docker.io/library/x` mirror
    layout, are legitimate repository paths and stay allowed.)"""
    for i, spec in enumerate(targets):
        if spec.repository.partition("/")[0] == target_registry:
            raise UsageError(f"target {str(spec)!r} starts with the target registry's name; give repo[:tag] "
                             f"within {target_registry}", target=f"{field}[{i}]")


def source_by_resource_id(resource_id: str, image: str, *, target: str) -> tuple[Reference, str]:
    """`--registry ID --source repo[:tag|@digest]` (az acr import): the reference is parsed against the
    registry's default login server; run_request() swaps in the one ARM reports."""
    rid = parse_resource_id(resource_id, target=target)
    placeholder = f"{rid.name.lower()}.azurecr.io"
    ref = Reference.parse(image, default_registry=placeholder)
    if ref.registry != placeholder:
        raise UsageError(f"with a registry resource ID the source image is repository[:tag|@digest], not {image!r}",
                         target="source.sourceImage")
    return ref, str(rid)


def parse_referrer_types(value: object, include: bool, *, where: str) -> tuple[str, ...]:
    """`referrersArtifactTypes`: media types, only with referrers included (API body and rules)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise UsageError(f"{where} must be a list of artifact (media) types", target=where)
    if len(value) > 16:
        raise UsageError(f"{where} has {len(value)} entries; at most 16 are allowed", target=where)
    for i, text in enumerate(value):
        if len(text) > 255 or any(c.isspace() for c in text.strip()):
            raise UsageError(f"{where}[{i}] is not a media type (e.g. application/spdx+json)", target=f"{where}[{i}]")
    if value and not include:
        raise UsageError(f"{where} needs referrers included", target=where)
    return tuple(dict.fromkeys(v.strip() for v in value))


def parse_verify(value: object, key_names: Collection[str] | None, *, where: str
                 ) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """`verify`: {"keys": ["<PEM>", ...], "keyRefs": ["name", ...]} -> ((name, PEM)...), (ref...).
    Each key is parsed now, so a bad one is a 400 naming it; keys never appear in a message.
    `key_names` None: the refs are checked when the import runs (verify_policy)."""
    if value is None:
        return (), ()
    if not isinstance(value, dict):
        raise UsageError(f'{where} must be an object {{"keys": [PEM, ...]}} or {{"keyRefs": [name, ...]}}', target=where)
    for name in value:
        if name not in ("keys", "keyRefs"):
            raise UsageError(f"{where}.{str(name)[:40]}: unknown field (expected keys, keyRefs)", target=f"{where}.{name}")
    pems, refs = value.get("keys") or [], value.get("keyRefs") or []
    for field_name, items in (("keys", pems), ("keyRefs", refs)):
        if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
            raise UsageError(f"{where}.{field_name} must be a list of strings", target=f"{where}.{field_name}")
        if len(items) > 10:
            raise UsageError(f"{where}.{field_name} has {len(items)} entries; at most 10 are allowed",
                             target=f"{where}.{field_name}")
    if not pems and not refs:
        raise UsageError(f"{where} needs at least one of keys or keyRefs", target=where)
    from ..values.cosign import load_public_key  # `cryptography`: only for requests that verify

    keys = []
    for i, pem in enumerate(pems):
        name = f"{where}.keys[{i}]"
        if len(pem) > 16384:
            raise UsageError(f"verification key {name} is too long", target=name)
        load_public_key(pem, name=name, target=name)
        keys.append((name, pem))
    for i, ref in enumerate(refs):
        if key_names is not None and ref not in key_names:
            raise UsageError(f"{where}.keyRefs[{i}]: {ref[:64]!r} is not a key this app holds (IMPORT_VERIFY_KEYS "
                             f"names: {', '.join(sorted(key_names)) or 'none'})", target=f"{where}.keyRefs[{i}]")
    return tuple(keys), tuple(refs)
