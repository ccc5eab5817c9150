"""The HTTP API's request body (ACR ImportImage-shaped) -> an ImportRequest, validated field by field.

Everything is checked before anything is enqueued; an error names the field (`target`), as
ARM error bodies do: {"error": {"code", "message", "target"}}.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

from ..auth import Credential
from ..values.arm import arm_error
from ..values.errors import ImporterError, UsageError
from ..net.hostpolicy import HostPolicy
from ..values.media import Platform
from ..values.reference import Reference, TargetSpec, parse_registry
from ..engine.request import (
    ImportRequest, check_targets, parse_referrer_types, parse_verify, resolve_targets, source_by_resource_id,
)

__all__ = ["MAX_BODY_BYTES", "Reply", "error_reply", "parse_import_body", "request_from_summary", "request_summary"]

MAX_BODY_BYTES = 64 * 1024
_MODES = {"noforce": False, "force": True}


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer, free of azure.functions: the shell maps it to an HttpResponse."""

    status: int
    body: dict
    headers: tuple[tuple[str, str], ...] = ()


def error_reply(status: int, code: str, message: str, target: str | None = None) -> Reply:
    return Reply(status, arm_error(code, message, target))


def _field(container: dict, name: str, path: str, kind: type, *, required: bool = False):
    value = container.get(name)
    if value is None:
        if required:
            raise UsageError(f"{path} is required", target=path)
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UsageError(f"{path} must be a {kind.__name__}", target=path)
    return value


def _strings(container: dict, name: str) -> list[str]:
    values = _field(container, name, name, list) or []
    if len(values) > 50:
        raise UsageError(f"{name} has {len(values)} entries; at most 50 are allowed", target=name)
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise UsageError(f"{name}[{i}] must be a string", target=f"{name}[{i}]")
    return values


def _with_target(exc: UsageError, target: str) -> UsageError:
    return UsageError(exc.message, target=exc.target or target)


def parse_import_body(raw: bytes, *, target_registry: str | None, policy: HostPolicy,
                      key_names: Collection[str] = ()) -> ImportRequest:
    """Validate a POST /api/imports body; raises UsageError (-> 400) or HostNotAllowed (-> 400).
    `key_names`: the keys the app holds (IMPORT_VERIFY_KEYS), which `verify.keyRefs` may name."""
    if len(raw) > MAX_BODY_BYTES:
        raise UsageError(f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}", target="body")
    try:
        body = json.loads(raw or b"null")
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: "[[[[..." within the cap
        raise UsageError("request body is not valid JSON", target="body") from None
    if not isinstance(body, dict):
        raise UsageError("request body must be a JSON object", target="body")
    if not target_registry:
        raise ImporterError("this deployment has no IMPORT_TARGET_REGISTRY")
    source = _field(body, "source", "source", dict, required=True)
    image = _field(source, "sourceImage", "source.sourceImage", str, required=True)
    registry_uri = _field(source, "registryUri", "source.registryUri", str)
    resource_id = _field(source, "resourceId", "source.resourceId", str)
    if resource_id and registry_uri:
        raise UsageError("give source.registryUri or source.resourceId, not both", target="source.resourceId")
    try:
        registry = parse_registry(registry_uri) if registry_uri else None
    except UsageError as exc:
        raise _with_target(exc, "source.registryUri") from None
    if registry and (image.count("/") and "." in image.split("/")[0]):
        raise UsageError("source.sourceImage must be repository[:tag|@digest] when source.registryUri is given",
                         target="source.sourceImage")
    try:
        if resource_id:
            ref, resource_id = source_by_resource_id(resource_id, image, target="source.resourceId")
        else:
            ref = Reference.parse(f"{registry}/{image}" if registry else image)
    except UsageError as exc:
        raise _with_target(exc, "source.sourceImage") from None
    credential = _credential(source)
    mode = _field(body, "mode", "mode", str) or "NoForce"
    if mode.lower() not in _MODES:
        raise UsageError(f"mode must be NoForce or Force, not {mode[:40]!r}", target="mode")
    platforms = _platforms(body)
    tags, untagged = _strings(body, "targetTags"), _strings(body, "untaggedTargetRepositories")
    targets = resolve_targets(ref, tags, untagged, fields=("targetTags", "untaggedTargetRepositories"))
    target = parse_registry(target_registry)
    check_targets(targets, target, field="targetTags")
    if ref.registry != target and not resource_id:  # an ARM-resolved ACR is checked at connect time
        try:
            policy.check(ref.registry)
        except ImporterError as exc:
            exc.target = "source.registryUri" if registry else "source.sourceImage"
            raise
    include_referrers = bool(_field(body, "includeReferrers", "includeReferrers", bool))
    referrer_types = parse_referrer_types(body.get("referrersArtifactTypes"), include_referrers,
                                          where="referrersArtifactTypes")
    keys, key_refs = parse_verify(body.get("verify"), key_names, where="verify")
    return ImportRequest(source=ref, targets=targets, target_registry=target, force=_MODES[mode.lower()],
                         platforms=platforms, credential=credential, source_resource_id=resource_id,
                         include_referrers=include_referrers, referrer_types=referrer_types, verify_keys=keys,
                         verify_key_refs=key_refs)


def _platforms(body: dict) -> tuple[Platform, ...]:
    """`"platform": "os/arch[/variant]"` (as ImportImage has it) or `"platforms": [...]` (several: a new index
    of just those), never both; an empty list is refused rather than read as "every platform"."""
    one = _field(body, "platform", "platform", str) or None  # "" was always read as "no platform"
    if body.get("platforms") is None:
        if one is None:
            return ()
        try:
            return (Platform.parse(one),)
        except UsageError as exc:
            raise _with_target(exc, "platform") from None
    if one is not None:
        raise UsageError("give platform or platforms, not both", target="platforms")
    texts = _strings(body, "platforms")
    if not texts:
        raise UsageError("platforms is empty; leave it out to import every platform", target="platforms")
    parsed = []
    for i, text in enumerate(texts):
        try:
            parsed.append(Platform.parse(text))
        except UsageError as exc:
            raise UsageError(f"platforms[{i}]: {exc.message}", target=f"platforms[{i}]") from None
    return tuple(parsed)


def _credential(source: dict) -> Credential | None:
    creds = _field(source, "credentials", "source.credentials", dict)
    if not creds:
        return None
    username = _field(creds, "username", "source.credentials.username", str)
    password = _field(creds, "password", "source.credentials.password", str)
    if username and not password:
        raise UsageError("source.credentials.password is required with a username",
                         target="source.credentials.password")
    if password is not None and not password:
        raise UsageError("source.credentials.password is empty", target="source.credentials.password")
    for name, value in (("username", username), ("password", password)):
        if value and len(value) > 16384:
            raise UsageError(f"source.credentials.{name} is too long", target=f"source.credentials.{name}")
    return Credential(username or None, password) if password else None


def request_summary(request: ImportRequest) -> dict:
    """The request as stored in the job record and shown in status: no credentials."""
    return {"source": str(request.source), "targetRegistry": request.target_registry,
            "targets": [str(t) for t in request.targets], "mode": "Force" if request.force else "NoForce",
            "platforms": [str(p) for p in request.platforms] or None,
            "authenticated": request.credential is not None, "credentialRef": request.credential_ref,
            "resourceId": request.source_resource_id, **_supply_chain(request)}


def _supply_chain(request: ImportRequest) -> dict:
    """Referrers and verification, when asked for. The public keys are kept (the worker needs them);
    the status view shows none of this."""
    out: dict = {}
    if request.include_referrers:
        out["includeReferrers"] = True
        if request.referrer_types:
            out["referrersArtifactTypes"] = list(request.referrer_types)
    if request.verifies:
        out["verify"] = {"keys": [list(pair) for pair in request.verify_keys], "keyRefs": list(request.verify_key_refs)}
    return out


def request_from_summary(summary: dict, credential: Credential | None) -> ImportRequest:
    """Rebuild the ImportRequest the worker runs from a stored summary."""
    source = Reference.parse(summary["source"])
    targets = []
    for text in summary["targets"]:
        repo, _, tag = text.partition(":")
        targets.append(TargetSpec(repo, tag or None))
    return ImportRequest(source=source, targets=tuple(targets), target_registry=summary["targetRegistry"],
                         force=summary.get("mode") == "Force",
                         platforms=_stored_platforms(summary),
                         credential=credential, credential_ref=summary.get("credentialRef"),
                         source_resource_id=summary.get("resourceId"),
                         include_referrers=bool(summary.get("includeReferrers")),
                         referrer_types=tuple(summary.get("referrersArtifactTypes") or ()),
                         verify_keys=tuple((name, pem) for name, pem in (summary.get("verify") or {}).get("keys", [])),
                         verify_key_refs=tuple((summary.get("verify") or {}).get("keyRefs", [])))


def _stored_platforms(summary: dict) -> tuple[Platform, ...]:
    # Records written before "platforms" existed carry a single "platform".
    texts = summary.get("platforms") or ([summary["platform"]] if summary.get("platform") else [])
    return tuple(Platform.parse(text) for text in texts)
