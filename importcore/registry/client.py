"""A client for one registry's OCI distribution API (distribution-spec v1.1 "spec.md").

Noun-first methods, cheap paths first (regclient): blob_head, blob_mount, blob_get, blob_read,
manifest_head/get/put, referrers_list, and the upload sessions it holds: uploads.start/patch/status/
commit/cancel (uploads.py). Errors are classified once, here, into errors.py's tree; requests without a
streamed body are retried by retry.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import httpx

from ..auth import Credential, RegistryAuth, parse_challenges, scopes_for
from ..auth.flow import SCOPES, TokenProvider
from ..values.errors import (
    AuthError, HostNotAllowed, ImporterError, IntegrityError, LimitExceeded, NotFoundError, RegistryError, TransportError, UsageError,
)
from ..net.bodies import MAX_ERROR_BODY, prefix, read_capped
from ..net.hostpolicy import HostPolicy
from ..values.media import ACCEPT, INDEX_TYPES, MAX_MANIFEST_BYTES, Descriptor, Manifest, parse_manifest
from ..values.reference import api_host
from ..observe.redact import redact_url
from ..net.retry import attempts, parse_retry_after
from .uploads import UploadSessions

__all__ = ["RegistryClient", "parse_remaining", "redact_url"]

T = TypeVar("T")
_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_LIST_BYTES = 8 * 1024 * 1024  # one page of a tag list or of the catalog
MAX_LIST_PAGES = 1000  # a `Link: rel="next"` chain longer than this is refused, not followed forever
CATALOG_SCOPE = "registry:catalog:*"
_MAX_REFERRER_PAGES = 32


def _netloc(url: httpx.URL) -> str:
    """host[:port] without userinfo: two registries on one host differ only by port."""
    return f"{url.host}:{url.port}" if url.port else url.host


def _short(digest: str) -> str:
    return digest[:19]


class RegistryClient:
    """One registry, one credential, shared by the threads of an import."""

    def __init__(self, registry: str, *, http: httpx.Client, policy: HostPolicy,
                 credential: Credential | None = None, role: str = "",
                 token_provider: TokenProvider | None = None) -> None:
        self.registry = registry
        self.role = role  # "source" / "target": only to say where credentials come from in errors
        scheme = policy.scheme(registry)
        try:
            self.base = httpx.URL(f"{scheme}://{api_host(registry)}")
            self._origin = f"{self.base.scheme}://{self.base.netloc.decode('ascii')}"
        except httpx.InvalidURL:  # e.g. 0177.0.0.1: fits the reference grammar, not a URL host
            raise UsageError(f"invalid registry {registry!r}: not a usable host name") from None
        self._http = http
        self.auth = RegistryAuth(registry, credential, http=http, plain_http=scheme == "http",
                                 token_provider=token_provider)
        self.requests = 0  # requests sent, for the bench and the no-op re-import check
        self.uploads = UploadSessions(self)
        # The registry's last word on its rate limit (`RateLimit-Remaining`), from any response.
        self.rate_remaining: int | None = None
        self._rate_lock = threading.Lock()

    # -- plumbing (also what UploadSessions asks of its Requester) -------------------------------

    def url(self, repository: str, kind: str, ref: str = "") -> httpx.URL:
        # Built from text, not base.join(): the same URL (repository, kind and ref are validated names)
        # at a third of the CPU, and a 100-layer import builds some 300 of them.
        return httpx.URL(f"{self._origin}/v2/{repository}/{kind}/{ref}")

    def _same_origin(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == (self.base.scheme, self.base.host, self.base.port)

    def send(self, method: str, url: httpx.URL, *, scopes: Iterable[str], what: str,
             headers: dict[str, str] | None = None, content: bytes | Iterable[bytes] | None = None,
             stream: bool = False) -> httpx.Response:
        """One request, following redirects ourselves (credentials only to our own origin)."""
        for hop in range(_MAX_REDIRECTS + 1):
            response = self._send_once(method, url, hop=hop, scopes=scopes, what=what, headers=headers,
                                       content=content)
            if response.status_code in _REDIRECTS and method in ("GET", "HEAD"):
                url = _redirect_target(response, url, what)
                continue
            self._note_rate_limit(response)
            if not stream:
                try:
                    response.read()
                except httpx.HTTPError as exc:
                    raise TransportError(f"{what}: reading the response failed ({exc.__class__.__name__})") from None
            return response
        raise RegistryError(f"{what}: more than {_MAX_REDIRECTS} redirects")

    def _send_once(self, method: str, url: httpx.URL, *, hop: int, scopes: Iterable[str], what: str,
                   headers: dict[str, str] | None, content: bytes | Iterable[bytes] | None) -> httpx.Response:
        """Send without following; every failure becomes an ImporterError saying what failed."""
        request = self._http.build_request(method, url, headers=headers, content=content,
                                           extensions={SCOPES: tuple(scopes)})
        auth = self.auth if self._same_origin(url) else None
        self.requests += 1
        try:
            return self._http.send(request, auth=auth, stream=True)
        except (HostNotAllowed, TransportError) as exc:  # the connect-time policy: refused, or no such host
            if hop == 0 and self._same_origin(url):
                raise
            raise _refused_where_sent(exc, what, url, redirected=hop > 0) from None
        except (httpx.HTTPError, httpx.StreamConsumed) as exc:
            raise _send_failure(exc, what, url) from None

    def _note_rate_limit(self, response: httpx.Response) -> None:
        remaining = parse_remaining(response.headers)
        if remaining is not None:
            with self._rate_lock:
                self.rate_remaining = remaining

    def error(self, response: httpx.Response, what: str) -> RegistryError:
        """Classify an error response once: status, OCI error codes, Retry-After, rate limits."""
        body = prefix(response, MAX_ERROR_BODY)
        codes: tuple[str, ...] = ()
        detail = ""
        try:
            errors = json.loads(body).get("errors") or []
            codes = tuple(str(e.get("code")) for e in errors if isinstance(e, dict) and e.get("code"))
            messages = [str(e.get("message"))[:200] for e in errors if isinstance(e, dict) and e.get("message")]
            detail = "; ".join(messages[:3])
        except (ValueError, AttributeError):
            pass
        status = response.status_code
        rate = _rate_limit(response.headers)
        parts = [f"{what}: {self.registry} answered {status}"]
        if codes:
            parts.append(" ".join(codes))
        if detail:
            parts.append(f"({detail})")
        if rate:
            parts.append(f"[rate limit: {rate}]")
        message = " ".join(parts)
        kind: type[RegistryError] = RegistryError
        if status in (401, 403) or "DENIED" in codes or "UNAUTHORIZED" in codes:
            kind = AuthError
            if status == 401:
                message += self._auth_hint(response)
        elif status == 404:
            kind = NotFoundError
        return kind(message, status=status, codes=codes, rate_limit=rate,
                    retry_after=parse_retry_after(response.headers.get("retry-after")))

    def _auth_hint(self, response: httpx.Response) -> str:
        """Why a 401 happened, as far as we can tell: no credentials, too little access, or refused."""
        if self.auth.credential is None and self.auth.token_provider is None:
            where = {"source": "--username/--password or REGISTRY_AUTH_FILE",
                     "target": "the target registry's entry in REGISTRY_AUTH_FILE or docker config.json"}
            return f" — credentials are required ({where.get(self.role, 'REGISTRY_AUTH_FILE')})"
        # Token spec: a valid token lacking the access answers error="insufficient_scope".
        for challenge in parse_challenges(response.headers.get("www-authenticate")):
            if challenge.params.get("error") == "insufficient_scope":
                scope = challenge.params.get("scope") or "the access this needs"
                return f" — the credentials do not grant {scope}"
        return " — the credentials were refused"

    def retry(self, fn: Callable[[], T]) -> T:
        for attempt in attempts():
            with attempt:
                return fn()
        raise AssertionError("unreachable")

    # -- manifests -------------------------------------------------------------------------

    def manifest_head(self, repository: str, ref: str, *, push: bool = False) -> tuple[str, str, int] | None:
        """(digest, mediaType, size) of a manifest, or None when absent. HEAD spends no Hub pull quota."""
        what = f"manifest {repository}:{ref}" if ":" not in ref else f"manifest {repository}@{_short(ref)}"
        scopes = [scopes_for(repository, "pull", "push") if push else scopes_for(repository, "pull")]

        def once() -> tuple[str, str, int] | None:
            r = self.send("HEAD", self.url(repository, "manifests", ref), scopes=scopes, what=what,
                           headers={"Accept": ACCEPT})
            if r.status_code == 404:
                return None
            if r.status_code != 200:
                raise self.error(r, what)
            digest = r.headers.get("docker-content-digest")
            if not digest:
                return self._digest_by_get(repository, ref, scopes, what)
            return digest, r.headers.get("content-type", ""), int(r.headers.get("content-length") or 0)

        return self.retry(once)

    def _digest_by_get(self, repository: str, ref: str, scopes: list[str], what: str) -> tuple[str, str, int] | None:
        try:
            m = self.manifest_get(repository, ref, scopes=scopes)
        except NotFoundError:
            return None
        return m.digest, m.media_type, len(m.raw)

    def manifest_get(self, repository: str, ref: str, *, scopes: list[str] | None = None) -> Manifest:
        """Fetch, cap at 4 MiB, verify the digest when asked by digest, parse."""
        what = f"manifest {self.registry}/{repository}" + (f"@{ref}" if ":" in ref else f":{ref}")
        scopes = scopes or [scopes_for(repository, "pull")]

        def once() -> Manifest:
            r = self.send("GET", self.url(repository, "manifests", ref), scopes=scopes, what=what,
                           headers={"Accept": ACCEPT}, stream=True)
            try:
                if r.status_code != 200:
                    raise self.error(r, what)
                raw = _read_within(r, MAX_MANIFEST_BYTES, what)
            finally:
                r.close()
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            if ":" in ref:
                algo = ref.split(":")[0]
                actual = f"{algo}:" + hashlib.new(algo, raw).hexdigest()
                if actual != ref:
                    raise IntegrityError(f"{what}: content digest is {actual}, not the digest asked for",
                                         target=ref)
                digest = ref
            return parse_manifest(raw, r.headers.get("content-type"), digest, where=what)

        return self.retry(once)

    def manifest_put(self, repository: str, ref: str, manifest: Manifest) -> httpx.Headers:
        """PUT the exact bytes; the registry must agree on the digest. Returns the answer's headers
        (`OCI-Subject`: the registry indexed the manifest's subject itself)."""
        what = f"push of manifest {_short(manifest.digest)} to {self.registry}/{repository}" + (
            "" if ":" in ref else f":{ref}")
        scopes = [scopes_for(repository, "pull", "push")]

        def once() -> httpx.Headers:
            r = self.send("PUT", self.url(repository, "manifests", ref), scopes=scopes, what=what,
                           headers={"Content-Type": manifest.media_type}, content=manifest.raw)
            if r.status_code not in (200, 201, 202):
                raise self.error(r, what)
            echoed = r.headers.get("docker-content-digest")
            if echoed and echoed != manifest.digest:
                raise IntegrityError(f"{what}: the registry stored it as {echoed}", target=manifest.digest)
            return r.headers

        return self.retry(once)

    # -- referrers -------------------------------------------------------------------------

    def referrers_list(self, repository: str, digest: str, *, artifact_type: str | None = None,
                       push: bool = False) -> list[Descriptor] | None:
        """The OCI 1.1 referrers API (distribution-spec v1.1 "Listing Referrers"): the descriptors of
        the manifests whose subject is `digest`, every page (`Link: <...>; rel="next"`), or None when
        the registry does not answer it (404: use the referrers tag schema instead). `artifact_type`
        is passed as the filter; the caller filters again, since a registry may ignore it (it says
        so with OCI-Filters-Applied)."""
        what = f"referrers of {_short(digest)} in {self.registry}/{repository}"
        scopes = [scopes_for(repository, "pull", "push") if push else scopes_for(repository, "pull")]
        url = self.url(repository, "referrers", digest)
        if artifact_type:
            url = url.copy_merge_params({"artifactType": artifact_type})
        found: list[Descriptor] = []
        for page in range(_MAX_REFERRER_PAGES):
            def once(url: httpx.URL = url) -> tuple[list[Descriptor] | None, httpx.URL | None]:
                r = self.send("GET", url, scopes=scopes, what=what,
                               headers={"Accept": "application/vnd.oci.image.index.v1+json"}, stream=True)
                try:
                    if r.status_code in (404, 405, 501) and page == 0:
                        return None, None  # no referrers API here
                    if r.status_code != 200:
                        raise self.error(r, what)
                    raw = _read_within(r, MAX_MANIFEST_BYTES, what)
                finally:
                    r.close()
                index = parse_manifest(raw, r.headers.get("content-type"), "sha256:" + hashlib.sha256(raw).hexdigest(),
                                       where=what)
                if index.media_type not in INDEX_TYPES:
                    raise RegistryError(f"{what}: the registry answered a {index.media_type}, not an image index",
                                        status=r.status_code)
                return list(index.children), self._next_page(r.headers.get("link"), url, what)

            listed, following = self.retry(once)
            if listed is None:
                return None
            found.extend(listed)
            if following is None:
                return found
            url = following
        raise LimitExceeded(f"{what}: more than {_MAX_REFERRER_PAGES} pages of referrers")

    def _next_page(self, link: str | None, current: httpx.URL, what: str) -> httpx.URL | None:
        """RFC 8288 `Link: </v2/...?last=x>; rel="next"`, kept to this registry."""
        for part in (link or "").split(","):
            target, _, params = part.partition(";")
            if 'rel="next"' not in params.replace(" ", "") and "rel=next" not in params.replace(" ", ""):
                continue
            target = target.strip()
            if not (target.startswith("<") and target.endswith(">")):
                continue
            try:
                url = current.join(target[1:-1])
            except httpx.InvalidURL:
                raise RegistryError(f"{what}: unusable Link header") from None
            if not self._same_origin(url):
                raise HostNotAllowed(f"{what}: the next page is on another host ({_netloc(url)})")
            return url
        return None

    # -- listings --------------------------------------------------------------------------

    def tags_list(self, repository: str, *, page_size: int = 1000) -> list[str]:
        """Every tag of `repository` (`GET /v2/<name>/tags/list?n=`, following `Link: rel="next"`)."""
        url = self.url(repository, "tags", "list").copy_merge_params({"n": str(page_size)})
        return self._paged(url, "tags", what=f"tag list of {self.registry}/{repository}",
                           scopes=[scopes_for(repository, "pull")])

    def catalog(self, *, page_size: int = 1000) -> list[str]:
        """Every repository the registry lists (`GET /v2/_catalog?n=`, paginated). Registries that do
        not list theirs (Docker Hub, most public ones) answer 401/403/404: a RegistryError."""
        url = self.base.join("/v2/_catalog").copy_merge_params({"n": str(page_size)})
        return self._paged(url, "repositories", what=f"catalog of {self.registry}", scopes=[CATALOG_SCOPE])

    def _paged(self, url: httpx.URL, key: str, *, what: str, scopes: list[str]) -> list[str]:
        items: list[str] = []
        seen: set[str] = set()
        for page in range(MAX_LIST_PAGES):
            seen.add(str(url))

            def once(url: httpx.URL = url) -> tuple[list[str], str | None]:
                r = self.send("GET", url, scopes=scopes, what=what, stream=True)
                try:
                    if r.status_code != 200:
                        raise self.error(r, what)
                    raw = _read_within(r, _MAX_LIST_BYTES, what)
                finally:
                    r.close()
                try:
                    values = json.loads(raw).get(key)
                except (ValueError, AttributeError, RecursionError):
                    raise RegistryError(f"{what}: the answer is not the expected JSON object") from None
                if values is None:
                    values = []  # Distribution answers {"tags": null} for a repository without tags
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise RegistryError(f"{what}: {key!r} is not a list of names")
                return values, _next_link(r.headers.get("link"))

            values, link = self.retry(once)
            items += values
            if not link:
                return items
            try:
                following = url.join(link)
            except httpx.InvalidURL:
                raise RegistryError(f"{what}: unusable Link to the next page") from None
            if not self._same_origin(following):
                raise RegistryError(f"{what}: the next page is on another host ({_netloc(following)})")
            if str(following) in seen:
                raise RegistryError(f"{what}: the Link to the next page loops back (page {page + 1})")
            url = following
        raise LimitExceeded(f"{what}: more than {MAX_LIST_PAGES} pages")

    # -- blobs -----------------------------------------------------------------------------

    def blob_head(self, repository: str, digest: str, *, push: bool = False) -> int | None:
        what = f"blob {_short(digest)} in {self.registry}/{repository}"
        scopes = [scopes_for(repository, "pull", "push") if push else scopes_for(repository, "pull")]

        def once() -> int | None:
            r = self.send("HEAD", self.url(repository, "blobs", digest), scopes=scopes, what=what)
            if r.status_code == 404:
                return None
            if r.status_code != 200:
                raise self.error(r, what)
            return int(r.headers.get("content-length") or -1)

        return self.retry(once)

    @contextmanager
    def blob_get(self, repository: str, digest: str, *, offset: int = 0) -> Iterator[httpx.Response]:
        """A streamed GET (following the registry's redirect to its storage without credentials)."""
        what = f"download of blob {digest} from {self.registry}/{repository}"
        headers = {"Range": f"bytes={offset}-"} if offset else None
        r = self.send("GET", self.url(repository, "blobs", digest), scopes=[scopes_for(repository, "pull")],
                       what=what, headers=headers, stream=True)
        try:
            if r.status_code not in (200, 206):
                raise self.error(r, what)
            yield r
        finally:
            r.close()

    def blob_read(self, repository: str, digest: str, *, max_bytes: int) -> bytes:
        """A small blob (a signature payload, a bundle) whole, verified against its digest."""
        what = f"blob {_short(digest)} in {self.registry}/{repository}"

        def once() -> bytes:
            with self.blob_get(repository, digest) as r:
                data = _read_within(r, max_bytes, what)
            algo = digest.split(":")[0]
            actual = f"{algo}:" + hashlib.new(algo, data).hexdigest()
            if actual != digest:
                raise IntegrityError(f"{what}: content digest is {actual}", target=digest)
            return data

        return self.retry(once)

    def blob_mount(self, repository: str, digest: str, from_repository: str) -> httpx.URL | None:
        """Cross-repository mount: None when mounted (201), else the upload Location it opened (202)."""
        what = f"mount of blob {_short(digest)} from {from_repository} into {self.registry}/{repository}"
        scopes = [scopes_for(repository, "pull", "push")]
        if from_repository != repository:
            scopes.append(scopes_for(from_repository, "pull"))
        url = self.url(repository, "blobs", "uploads/").copy_merge_params({"mount": digest, "from": from_repository})

        def once() -> httpx.URL | None:
            r = self.send("POST", url, scopes=scopes, what=what, headers={"Content-Length": "0"})
            if r.status_code == 201:
                return None
            if r.status_code == 202:
                return self.uploads.location(r, what)
            raise self.error(r, what)

        return self.retry(once)


def _redirect_target(response: httpx.Response, url: httpx.URL, what: str) -> httpx.URL:
    """Where a redirect of `url` leads, if we follow it there: never https -> http, never another scheme."""
    location = response.headers.get("location")
    response.close()
    if not location:
        raise RegistryError(f"{what}: redirect without a Location", status=response.status_code)
    try:
        target = url.join(location)
    except httpx.InvalidURL:
        raise _unusable_location(what, url, response.status_code) from None
    if url.scheme == "https" and target.scheme != "https":
        raise HostNotAllowed(f"{what}: refusing a redirect from https to {target.scheme}")
    if target.scheme not in ("http", "https"):
        raise HostNotAllowed(f"{what}: refusing a redirect to a {target.scheme} URL")
    if not target.host:
        raise _unusable_location(what, url, response.status_code)
    return target


def _refused_where_sent(exc: HostNotAllowed | TransportError, what: str, url: httpx.URL, *,
                        redirected: bool) -> ImporterError:
    """A registry chose this URL (a redirect, an upload Location), not the caller: say so, without
    its query (signatures, upload state)."""
    how = "redirected to" if redirected else "the registry's URL"
    if isinstance(exc, HostNotAllowed):
        return HostNotAllowed(f"{what}: {how} {redact_url(url)}, which is not allowed: {exc.message}",
                              target=exc.target)
    return TransportError(f"{what}: {how} {redact_url(url)}: {exc.message}", target=exc.target)


def _send_failure(exc: httpx.HTTPError | httpx.StreamConsumed, what: str, url: httpx.URL) -> ImporterError:
    """What an httpx failure to send means, in the tree's terms."""
    if isinstance(exc, httpx.StreamConsumed):
        return TransportError(f"{what}: the registry asked to re-authenticate mid-upload")
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(f"{what}: timed out talking to {_netloc(url)}")
    if isinstance(exc, httpx.RemoteProtocolError) and str(exc).startswith("Invalid URL in location header"):
        # httpx parses a redirect's Location even with following off (httpx 0.28,
        # Client._redirect_url) and drops the 3xx; the same Location would come back on every retry.
        return _unusable_location(what, url, None)
    return TransportError(f"{what}: connection to {_netloc(url)} failed ({exc.__class__.__name__})")


def _unusable_location(what: str, url: httpx.URL, status: int | None) -> RegistryError:
    # Not a transport failure to retry: the registry would send the same Location again.
    return RegistryError(f"{what}: {_netloc(url)} redirected to an unusable Location", status=status)


def parse_remaining(headers: httpx.Headers) -> int | None:
    """`RateLimit-Remaining: 76;w=21600` (Docker Hub), `RateLimit-Remaining: 76` (IETF draft) or
    `X-RateLimit-Remaining: 76` as a number; None when absent or unreadable."""
    for name in ("ratelimit-remaining", "x-ratelimit-remaining"):
        value = headers.get(name)
        if value:
            count = value.partition(";")[0].partition(",")[0].strip()
            if count.isascii() and count.isdigit() and len(count) < 19:
                return int(count)
    return None


def _next_link(value: str | None) -> str | None:
    """The URL of `Link: <...>; rel="next"` (RFC 8288), or None."""
    if not value:
        return None
    for part in value.split(","):
        url, _, params = part.partition(";")
        url = url.strip()
        if not (url.startswith("<") and url.endswith(">")):
            continue
        rels = [p.strip().partition("=")[2].strip().strip('"').lower().split() for p in params.split(";")
                if p.strip().lower().startswith("rel")]
        if any("next" in rel for rel in rels):
            return url[1:-1]
    return None


def _rate_limit(headers: httpx.Headers) -> str | None:
    """Docker Hub's `RateLimit-Remaining: 0;w=21600` / `RateLimit-Limit: 100;w=21600` as "0 of 100
    remaining (window 21600 s)": what a user needs to tell a quota from an outage."""
    remaining = headers.get("ratelimit-remaining")
    if not remaining:
        return None
    count, _, policy = remaining.partition(";")
    limit = (headers.get("ratelimit-limit") or "?").partition(";")[0].strip()[:20]
    window = policy.strip().removeprefix("w=")[:20]
    text = f"{count.strip()[:20]} of {limit} remaining"
    return f"{text} (window {window} s)" if window.isascii() and window.isdigit() else text


def _read_within(response: httpx.Response, cap: int, what: str) -> bytes:
    """Read a body but never past `cap` bytes (a hostile server cannot make us buffer more)."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise LimitExceeded(f"{what}: {declared} bytes, over the {cap}-byte limit")
    try:
        raw = read_capped(response, cap, raw=True)
    except httpx.HTTPError as exc:
        raise TransportError(f"{what}: reading failed ({exc.__class__.__name__})") from None
    if raw is None:
        raise LimitExceeded(f"{what}: larger than the {cap}-byte limit")
    return raw
