"""Build and push synthetic images/artifacts with plain httpx (independent of importcore and skopeo).

Manifests are serialized with deliberately odd whitespace (``_odd_json``): a copier that
re-serializes instead of copying bytes changes the digest and gets caught.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Optional, Union

import httpx

# Media types
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
EMPTY_DESCRIPTOR = {"mediaType": OCI_EMPTY, "size": 2,
                    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
ALL_MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)

_TYPES = {"oci": (OCI_MANIFEST, OCI_INDEX, OCI_CONFIG, OCI_LAYER, OCI_LAYER_NONDIST),
          "docker": (DOCKER_MANIFEST, DOCKER_LIST, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_FOREIGN)}

Platform = tuple  # (os, architecture, variant-or-None)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _odd_json(obj) -> bytes:
    """Valid JSON no canonical encoder would produce (indent 3, ' : ' separators, trailing newline)."""
    return (json.dumps(obj, indent=3, separators=(",", " : ")) + "\n").encode()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """'Bearer realm="x",service="y",scope="a b"' -> ('bearer', {...}). Quoted values may hold commas."""
    scheme, _, rest = header.strip().partition(" ")
    params, i = {}, 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip(" ,").lower()
        if rest[eq + 1:eq + 2] == '"':
            end = rest.index('"', eq + 2)
            params[key], i = rest[eq + 2:end], end + 1
        else:
            end = rest.find(",", eq)
            end = len(rest) if end < 0 else end
            params[key], i = rest[eq + 1:end].strip(), end
        i += 1 if i < len(rest) and rest[i] == "," else 0
    return scheme.lower(), params


class Pusher:
    """Minimal registry client for seeding content: anonymous, Basic, or Bearer-token auth.

    On a 401 it reads WWW-Authenticate; Basic -> retries with the credentials; Bearer -> GETs a
    token from the realm (with Basic credentials if any) for the challenge's scope, caches it per
    scope, retries once. A refusal after that raises httpx.HTTPStatusError (status 401/403).
    """

    def __init__(self, registry, username: Optional[str] = None, password: Optional[str] = None):
        self.base = registry.url if hasattr(registry, "url") else str(registry).rstrip("/")
        self.creds = (username, password) if username is not None else None
        self.http = httpx.Client(timeout=30.0)
        self._tokens: dict[str, str] = {}
        self._auth_header: Optional[str] = None  # last header that worked (Basic or Bearer)

    def close(self):
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, method: str, url: str, **kw) -> httpx.Response:
        """One request with the auth dance; the response is returned whatever its status."""
        url = urllib.parse.urljoin(self.base + "/", url)
        headers = dict(kw.pop("headers", {}) or {})
        if self._auth_header:  # send what worked last time to save a 401 round trip
            headers["Authorization"] = self._auth_header
        r = self.http.request(method, url, headers=headers, **kw)
        if r.status_code != 401 or "www-authenticate" not in r.headers:
            return r
        scheme, params = parse_challenge(r.headers["www-authenticate"])
        if scheme == "basic" and self.creds:
            raw = f"{self.creds[0]}:{self.creds[1]}".encode()
            auth = "Basic " + base64.b64encode(raw).decode()
        elif scheme == "bearer":
            scope = params.get("scope", "")
            auth = "Bearer " + self._tokens.get(scope, "")
            if auth == "Bearer " or auth == headers.get("Authorization"):  # none cached, or it just failed
                self._tokens[scope] = self._token(params)
                auth = "Bearer " + self._tokens[scope]
        else:
            return r
        if auth == headers.get("Authorization"):
            return r  # the same credentials were just refused
        headers["Authorization"] = self._auth_header = auth
        return self.http.request(method, url, headers=headers, **kw)

    def _token(self, params: dict[str, str]) -> str:
        q = {"service": params.get("service", "")}
        if params.get("scope"):
            q["scope"] = params["scope"]
        auth = httpx.BasicAuth(*self.creds) if self.creds else None
        r = self.http.get(params["realm"], params=q, auth=auth)
        self._ok(r)
        body = r.json()
        return body.get("token") or body["access_token"]

    def _ok(self, r: httpx.Response) -> httpx.Response:
        if r.status_code >= 400:
            raise httpx.HTTPStatusError(f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:300]}",
                                        request=r.request, response=r)
        return r

    def blob(self, repo: str, data: bytes, media_type: str = OCI_LAYER) -> dict:
        """Push ``data`` (monolithic POST + PUT) unless present; return its descriptor dict."""
        d = sha256(data)
        if self.request("HEAD", f"/v2/{repo}/blobs/{d}").status_code != 200:
            loc = self._ok(self.request("POST", f"/v2/{repo}/blobs/uploads/")).headers["location"]
            sep = "&" if "?" in loc else "?"
            self._ok(self.request("PUT", f"{loc}{sep}digest={d}", content=data,
                                  headers={"Content-Type": "application/octet-stream"}))
        return {"mediaType": media_type, "digest": d, "size": len(data)}

    def manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or digest; return its digest (checked against the registry's)."""
        r = self._ok(self.request("PUT", f"/v2/{repo}/manifests/{ref}", content=body,
                                  headers={"Content-Type": media_type}))
        d = sha256(body)
        assert r.headers.get("docker-content-digest", d) == d, "registry computed another digest"
        return d

    def get_manifest(self, repo: str, ref: str) -> httpx.Response:
        """GET a manifest accepting every type (Distribution 2.8 hides OCI ones from narrow Accepts)."""
        return self.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)})

    def get_blob(self, repo: str, digest: str) -> httpx.Response:
        return self.request("GET", f"/v2/{repo}/blobs/{digest}", follow_redirects=True)

    def tags(self, repo: str) -> list[str]:
        r = self.request("GET", f"/v2/{repo}/tags/list")
        return [] if r.status_code == 404 else (self._ok(r).json().get("tags") or [])


@dataclass
class Pushed:
    """What a push_* helper put in the registry.

    blobs: (digest, size) of every blob pushed (unique; config + layers of every child),
    never foreign/non-distributable layers (they are not in the registry). total_blob_bytes is
    their sum: what a copier must transfer into an empty target.
    """
    repo: str
    tag: Optional[str]
    digest: str
    raw: bytes
    media_type: str
    blobs: list[tuple[str, int]] = field(default_factory=list)
    foreign: list[dict] = field(default_factory=list)  # descriptors of foreign layers (not pushed)
    platform: Optional[Platform] = None
    children: list["Pushed"] = field(default_factory=list)  # for indexes, in manifest order
    descriptor_annotations: Optional[dict] = None  # the annotations of this manifest's entry in its index

    @property
    def total_blob_bytes(self) -> int:
        return sum(size for _, size in self.blobs)

    @property
    def ref(self) -> str:
        """'repo:tag' or 'repo@digest', for building 'host/ref' strings."""
        return f"{self.repo}:{self.tag}" if self.tag else f"{self.repo}@{self.digest}"

    def descriptor(self) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.raw)}
        if self.platform:
            d["platform"] = _platform_dict(self.platform)
        if self.descriptor_annotations:
            d["annotations"] = self.descriptor_annotations
        return d


def _platform_dict(p: Platform) -> dict:
    d = {"architecture": p[1], "os": p[0]}
    if len(p) > 2 and p[2]:
        d["variant"] = p[2]
    return d


def _uniq(blobs):
    return list(dict.fromkeys(blobs))


def push_image(pusher: Pusher, repo: str, tag: Optional[str] = None, *,
               layers: list[Union[bytes, int]] = (1024, 2048), config: Optional[dict] = None,
               media: str = "oci", platform: Platform = ("linux", "amd64", None),
               annotations: Optional[dict] = None, foreign_layers: int = 0) -> Pushed:
    """Push one image manifest. ``layers`` items are bytes, or ints = sizes of random bytes.

    ``tag=None`` pushes by digest only. ``foreign_layers`` prepends that many foreign (docker) /
    non-distributable (oci) layers with ``urls`` whose blobs are NOT pushed, like Windows base layers.
    """
    mt, _, ct, lt, ft = _TYPES[media]
    foreign = []
    for _ in range(foreign_layers):
        data = os.urandom(512)
        foreign.append({"mediaType": ft, "size": len(data), "digest": sha256(data),
                        "urls": [f"https://foreign.example.invalid/layers/{sha256(data)[7:]}"]})
    layer_descs = [pusher.blob(repo, os.urandom(x) if isinstance(x, int) else x, lt) for x in layers]
    all_layers = foreign + layer_descs
    if config is None:
        config = {**_platform_dict(platform), "created": "2024-01-01T00:00:00Z",
                  "config": {"Labels": {"test.nonce": os.urandom(8).hex()}},
                  "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in all_layers]}}
    cfg = pusher.blob(repo, _odd_json(config), ct)
    body = {"schemaVersion": 2, "mediaType": mt, "config": cfg, "layers": all_layers}
    if annotations:
        body["annotations"] = annotations
    return _push_manifest(pusher, repo, tag, body, mt, [cfg] + layer_descs, foreign=foreign, platform=platform)


def _push_manifest(pusher, repo, tag, body, mt, blob_descs, **kw) -> Pushed:
    raw = _odd_json(body)
    digest = pusher.manifest(repo, tag or sha256(raw), raw, mt)
    return Pushed(repo, tag, digest, raw, mt, blobs=_uniq((d["digest"], d["size"]) for d in blob_descs), **kw)


def push_index(pusher: Pusher, repo: str, tag: Optional[str] = None, *,
               platforms: list[Platform] = (("linux", "amd64", None), ("linux", "arm64", "v8")),
               media: str = "oci", layers_per_image: int = 2, layer_size: int = 1024,
               nested: bool = False, annotations: Optional[dict] = None,
               child_annotations: Optional[list[Optional[dict]]] = None, attestations: bool = False) -> Pushed:
    """Push one image per platform (by digest) and an index over them, tagged ``tag``.

    nested=True: the tagged index's only child is an inner (untagged) index over the images;
    ``.children`` then holds that inner index, whose ``.children`` are the images.
    child_annotations: per platform, the annotations of that image's entry in the index.
    attestations=True: after the images, one attestation manifest per image, listed the way buildkit
    lists them (platform unknown/unknown, annotated vnd.docker.reference.type/digest); also in ``.children``.
    """
    _, it, *_ = _TYPES[media]
    if nested:
        kids = [push_index(pusher, repo, None, platforms=platforms, media=media,
                           layers_per_image=layers_per_image, layer_size=layer_size)]
    else:
        kids = [push_image(pusher, repo, None, layers=[layer_size] * layers_per_image, media=media, platform=p)
                for p in platforms]
        for kid, notes in zip(kids, child_annotations or []):
            kid.descriptor_annotations = notes
        if attestations:
            images = list(kids)
            for image in images:
                att = push_image(pusher, repo, None, layers=[300], media=media, platform=("unknown", "unknown", None))
                att.descriptor_annotations = {"vnd.docker.reference.digest": image.digest,
                                              "vnd.docker.reference.type": "attestation-manifest"}
                kids.append(att)
    body = {"schemaVersion": 2, "mediaType": it, "manifests": [k.descriptor() for k in kids]}
    if annotations:
        body["annotations"] = annotations
    raw = _odd_json(body)
    digest = pusher.manifest(repo, tag or sha256(raw), raw, it)
    blobs = _uniq(b for k in kids for b in k.blobs)
    return Pushed(repo, tag, digest, raw, it, blobs=blobs, children=kids)


def push_helm_chart(pusher: Pusher, repo: str, tag: Optional[str] = "0.1.0", *, chart_size: int = 1500) -> Pushed:
    """An OCI Helm chart: helm config media type + one chart-content layer (random bytes)."""
    cfg = pusher.blob(repo, _odd_json({"apiVersion": "v2", "name": repo.rsplit("/", 1)[-1],
                                       "version": tag or "0.1.0", "nonce": os.urandom(6).hex()}), HELM_CONFIG)
    layer = pusher.blob(repo, os.urandom(chart_size), HELM_CHART)
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [layer]}
    return _push_manifest(pusher, repo, tag, body, OCI_MANIFEST, [cfg, layer])


def push_artifact_empty_config(pusher: Pusher, repo: str, tag: Optional[str] = None, *,
                               artifact_type: str = "application/vnd.example.sbom.v1+json",
                               data: Optional[bytes] = None, subject: Optional[dict] = None) -> Pushed:
    """An OCI 1.1 artifact: ``artifactType`` set, config = the empty descriptor ({}), one data layer.

    ``subject`` (a descriptor, e.g. ``Pushed.descriptor()``) makes it a referrer; Distribution 2.8
    stores it byte-for-byte but has no referrers API.
    """
    empty = pusher.blob(repo, b"{}", OCI_EMPTY)
    assert empty == EMPTY_DESCRIPTOR
    layer = pusher.blob(repo, data if data is not None else _odd_json({"nonce": os.urandom(8).hex()}),
                        artifact_type)
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": empty, "layers": [layer]}
    if subject:
        body["subject"] = {k: subject[k] for k in ("mediaType", "digest", "size")}
    return _push_manifest(pusher, repo, tag, body, OCI_MANIFEST, [empty, layer])
