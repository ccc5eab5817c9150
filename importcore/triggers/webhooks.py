"""Registry webhook payloads -> PushEvents (pure), one parser per provider.

Only a tagged push of a top-level manifest is an event to act on. Blob pushes, untagged (child)
manifests, pulls, deletes, scans, pings: acknowledged and ignored, each with a reason.

- `distribution`: `{"events": [{action, target{mediaType, digest, repository, tag, url}, request{host}}]}`;
  the host is request.host, else target.url's.
- `acr`: `{id, action: push|chart_push, target{repository, tag, digest, mediaType}, request{host}}`;
  the host is request.host, else `registry=` (chart_push has no request).
- `dockerhub`: `{push_data{tag}, repository{repo_name}, callback_url}`; always docker.io, no digest.
- `harbor`: `{type: PUSH_ARTIFACT, event_data{resources[{tag, digest, resource_url}], repository{repo_full_name}}}`
  or Harbor's CloudEvents format (`type: harbor.artifact.pushed`, `data`); the host is resource_url's.
- `github`: `registry_package` (or `package`) event, action published,
  `package_version.container_metadata.tag{name, digest}`; ghcr.io/<owner>/<name>, or `registry=` (GHES).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping

from ..values.errors import UnknownProvider, UsageError
from ..values.media import DOCKER_SCHEMA1, INDEX_TYPES, MANIFEST_TYPES
from ..values.reference import DOCKER_HUB, parse_digest
from .events import (
    Collector, ParsedDelivery, PushEvent, header, load_json, media_type_base, obj, opt_list, opt_obj, opt_str, req_str,
)

__all__ = ["PROVIDERS", "acr_push_event", "parse_webhook"]

GHCR = "ghcr.io"
_MANIFEST_MEDIA_TYPES = INDEX_TYPES | MANIFEST_TYPES | DOCKER_SCHEMA1


def parse_webhook(provider: str, body: bytes | str, headers: Mapping[str, str] | None = None, *,
                  registry: str | None = None) -> ParsedDelivery:
    """One webhook delivery from `provider` -> ParsedDelivery(events, ignored).

    `registry` is the host to use when the payload does not name one (ACR chart_push, Harbor without
    resource_url, GitHub Enterprise Server's container registry instead of ghcr.io).
    Raises UnknownProvider, UsageError for a malformed payload, LimitExceeded for an oversized body.
    """
    parser = PROVIDERS.get(provider.lower() if isinstance(provider, str) else "")
    if parser is None:
        raise UnknownProvider(f"unknown webhook provider {str(provider)[:40]!r}: expected one of "
                              f"{', '.join(sorted(PROVIDERS))}", target="provider")
    out = Collector()
    parser(load_json(body, what=f"{provider.lower()} webhook"), headers, registry, out)
    return out.result()


# -- shared with Event Grid: ACR's event data ------------------------------------------------------

def acr_push_event(data: dict, *, where: str, provider: str, action: str, event_id: str | None,
                   registry_fallback: str | None, out: Collector) -> PushEvent | None:
    """ACR's event data (webhook body or Event Grid `data`): target{repository,tag,digest,mediaType},
    request{host}. Untagged targets (children of an index, pushes by digest) are ignored."""
    target = opt_obj(data, "target", where)
    tag = opt_str(target, "tag", f"{where}.target")
    repository = req_str(target, "repository", f"{where}.target")
    if tag is None:
        out.ignore(where, f"untagged manifest in {repository[:100]} (a child of an index, or pushed by digest)")
        return None
    host = opt_str(opt_obj(data, "request", where), "host", f"{where}.request") or registry_fallback
    if host is None:
        raise UsageError(f"{where}.request.host is missing and no registry was given for this endpoint",
                         target=f"{where}.request.host")
    return PushEvent.build(registry=host, repository=repository, tag=tag,
                           digest=opt_str(target, "digest", f"{where}.target"),
                           media_type=media_type_base(opt_str(target, "mediaType", f"{where}.target")),
                           provider=provider, event_id=event_id, action=action, where=where)


# -- providers -----------------------------------------------------------------------------------

def _distribution(payload: object, headers, registry: str | None, out: Collector) -> None:
    envelope = obj(payload, "body")
    if "events" not in envelope:
        raise UsageError('body: a notification envelope {"events": [...]} is required', target="events")
    for i, raw in enumerate(opt_list(envelope, "events", "body")):
        where = f"events[{i}]"
        event = obj(raw, where)
        action = opt_str(event, "action", where)
        if action != "push":
            out.ignore(where, f"action {str(action)[:20]} is not a push")
            continue
        target = opt_obj(event, "target", where)
        url = opt_str(target, "url", f"{where}.target") or ""
        media_type = media_type_base(opt_str(target, "mediaType", f"{where}.target"))
        repository = req_str(target, "repository", f"{where}.target")
        if "/blobs/" in url or (media_type is not None and media_type not in _MANIFEST_MEDIA_TYPES):
            out.ignore(where, f"blob push in {repository[:100]} ({media_type})")
            continue
        tag = opt_str(target, "tag", f"{where}.target")
        if tag is None:
            out.ignore(where, f"untagged manifest in {repository[:100]} (a child of an index, or pushed by digest)")
            continue
        host = opt_str(opt_obj(event, "request", where), "host", f"{where}.request") or _url_host(url) or registry
        if host is None:
            raise UsageError(f"{where}.request.host is missing", target=f"{where}.request.host")
        out.events.append(PushEvent.build(
            registry=host, repository=repository, tag=tag, digest=opt_str(target, "digest", f"{where}.target"),
            media_type=media_type, provider="distribution", event_id=opt_str(event, "id", where), where=where))


def _acr(payload: object, headers, registry: str | None, out: Collector) -> None:
    data = obj(payload, "body")
    action = opt_str(data, "action", "body")
    if action not in ("push", "chart_push"):
        out.ignore("body", f"action {str(action)[:20]} is not push or chart_push")
        return
    push = acr_push_event(data, where="body", provider="acr", action=action, event_id=opt_str(data, "id", "body"),
                          registry_fallback=registry, out=out)
    if push is not None:
        out.events.append(push)


def _dockerhub(payload: object, headers, registry: str | None, out: Collector) -> None:
    # Docker Hub signs nothing and sends no digest: the import resolves the tag at the registry when it
    # runs (and copies by the digest it found), so the payload's word is never trusted for content.
    data = obj(payload, "body")
    push_data = opt_obj(data, "push_data", "body")
    repository = req_str(opt_obj(data, "repository", "body"), "repo_name", "body.repository")
    tag = opt_str(push_data, "tag", "body.push_data")
    if tag is None:
        out.ignore("body", f"push to {repository[:100]} without a tag")
        return
    out.events.append(PushEvent.build(registry=DOCKER_HUB, repository=repository, tag=tag, digest=None,
                                      media_type=None, provider="dockerhub", where="body"))


def _harbor(payload: object, headers, registry: str | None, out: Collector) -> None:
    data = obj(payload, "body")
    if "specversion" in data:  # Harbor's CloudEvents payload format
        event_type = opt_str(data, "type", "body")
        event_data, where = opt_obj(data, "data", "body"), "body.data"
        pushed = event_type == "harbor.artifact.pushed"
        event_id = opt_str(data, "id", "body")
    else:
        event_type = opt_str(data, "type", "body")
        event_data, where = opt_obj(data, "event_data", "body"), "body.event_data"
        pushed = (event_type or "").upper() == "PUSH_ARTIFACT"
        event_id = header(headers, "X-Harbor-Event-Id")
    if not pushed:
        out.ignore("body", f"event type {str(event_type)[:40]} is not an artifact push")
        return
    repository = req_str(opt_obj(event_data, "repository", where), "repo_full_name", f"{where}.repository")
    resources = opt_list(event_data, "resources", where)
    if not resources:
        out.ignore(where, f"push to {repository[:100]} lists no resources")
    for i, raw in enumerate(resources):
        rwhere = f"{where}.resources[{i}]"
        resource = obj(raw, rwhere)
        tag = opt_str(resource, "tag", rwhere)
        if tag is None:
            out.ignore(rwhere, f"untagged artifact in {repository[:100]}")
            continue
        url = opt_str(resource, "resource_url", rwhere)
        host = _resource_host(url) or registry
        if host is None:
            raise UsageError(f"{rwhere}.resource_url is missing and no registry was given for this endpoint",
                             target=f"{rwhere}.resource_url")
        out.events.append(PushEvent.build(
            registry=host, repository=repository, tag=tag, digest=opt_str(resource, "digest", rwhere),
            media_type=None, provider="harbor", event_id=event_id, where=rwhere))


def _github(payload: object, headers, registry: str | None, out: Collector) -> None:
    data = obj(payload, "body")
    kind = (header(headers, "X-GitHub-Event") or "").strip().lower()
    if not kind:
        kind = "registry_package" if "registry_package" in data else "package" if "package" in data else ""
    if kind not in ("registry_package", "package"):
        out.ignore("body", f"GitHub event {kind[:40] or '(none)'} is not a package event")
        return
    action = opt_str(data, "action", "body")
    if action != "published":
        out.ignore("body", f"{kind} action {str(action)[:20]} is not published")
        return
    where = f"body.{kind}"
    package = obj(data.get(kind), where)
    package_type = (opt_str(package, "package_type", where) or opt_str(package, "ecosystem", where) or "").lower()
    if package_type not in ("container", "docker"):
        out.ignore(where, f"package type {package_type[:20] or '(none)'} is not a container")
        return
    name = req_str(package, "name", where)
    owner = opt_str(opt_obj(package, "owner", where), "login", f"{where}.owner") or req_str(package, "namespace", where)
    version = opt_obj(package, "package_version", where)
    vwhere = f"{where}.package_version"
    metadata = opt_obj(version, "container_metadata", vwhere)
    tag_info = opt_obj(metadata, "tag", f"{vwhere}.container_metadata")
    twhere = f"{vwhere}.container_metadata.tag"
    tag = opt_str(tag_info, "name", twhere)
    repository = f"{owner}/{name}".lower()
    if tag is None:
        out.ignore(where, f"untagged version of {repository[:100]} (a child manifest, signature or attestation)")
        return
    digest = opt_str(tag_info, "digest", twhere)
    if digest is not None:
        parse_digest(digest, what=f"digest in {twhere}.digest")
    out.events.append(PushEvent.build(
        registry=registry or GHCR, repository=repository, tag=tag, digest=digest,
        media_type=media_type_base(opt_str(opt_obj(metadata, "manifest", f"{vwhere}.container_metadata"),
                                           "media_type", f"{vwhere}.container_metadata.manifest")),
        provider="github", event_id=header(headers, "X-GitHub-Delivery"), where=twhere))


def _url_host(url: str) -> str | None:
    try:
        netloc = urllib.parse.urlsplit(url).netloc if url else ""
    except ValueError:
        return None
    return netloc.rpartition("@")[2] or None  # never user:password@


def _resource_host(url: str | None) -> str | None:
    """Harbor's resource_url is `host[:port]/project/repo:tag` (no scheme)."""
    if not url:
        return None
    if "://" in url:
        return _url_host(url)
    first, sep, _ = url.partition("/")
    return first if sep and first else None


PROVIDERS: dict[str, Callable[[object, Mapping[str, str] | None, str | None, Collector], None]] = {
    "acr": _acr,
    "distribution": _distribution,
    "dockerhub": _dockerhub,
    "github": _github,
    "harbor": _harbor,
}
