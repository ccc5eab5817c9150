"""A STAND-IN for a registry with the OCI 1.1 referrers API: a small proxy in front of a real
Distribution 2.8.2 that adds the API the registry lacks. No offline registry here implements it
(Distribution 2.8 has none; 3.x is not packaged), so this is the only way to exercise that path.

What it adds, per distribution-spec v1.1 "Listing Referrers" and "Pushing Manifests with Subject":
- a manifest PUT whose body has a `subject` is forwarded; on success the proxy indexes it and answers
  `OCI-Subject: <subject digest>` (so a client knows not to maintain the tag-schema index);
- `GET /v2/<name>/referrers/<digest>` answers an image index of those descriptors (artifactType: the
  manifest's, else its config's media type; its annotations), one descriptor per page with
  `Link: <...?last=N>; rel="next"` (so pagination is exercised), filtered by `?artifactType=`
  with `OCI-Filters-Applied: artifactType`.
Everything else is forwarded untouched, Host header included (Distribution's Locations then point
back here). Requests are buffered whole: test data is small. Nothing here imports importcore.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .httpserver import serve_in_background, stop_server

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade"}
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")


class ReferrersStandIn:
    def __init__(self, upstream) -> None:
        url = urllib.parse.urlsplit(upstream.url)
        self.upstream = (url.hostname, url.port)
        self.index: dict[tuple[str, str], list[dict]] = {}  # (repository, subject) -> descriptors
        self.listings: list[str] = []  # every referrers request target, in order
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> "ReferrersStandIn":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port = serve_in_background(self._server, "referrers-standin")
        return self

    def __exit__(self, *exc) -> None:
        stop_server(self._server)

    def record(self, repository: str, body: bytes) -> str | None:
        try:
            data = json.loads(body)
        except ValueError:
            return None
        subject = data.get("subject") if isinstance(data, dict) else None
        if not isinstance(subject, dict):
            return None
        entry = {"mediaType": data.get("mediaType"), "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                 "size": len(body)}
        kind = data.get("artifactType") or (data.get("config") or {}).get("mediaType")
        if kind:
            entry["artifactType"] = kind
        if data.get("annotations"):
            entry["annotations"] = data["annotations"]
        with self._lock:
            listed = self.index.setdefault((repository, subject["digest"]), [])
            if entry["digest"] not in {e["digest"] for e in listed}:
                listed.append(entry)
        return subject["digest"]


def _handler(standin: ReferrersStandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _referrers(self, name: str, digest: str, query: dict) -> None:
            with standin._lock:
                standin.listings.append(self.path)
                listed = list(standin.index.get((name, digest), []))
            wanted = query.get("artifactType", [None])[0]
            if wanted:
                listed = [e for e in listed if e.get("artifactType") == wanted]
            start = int(query.get("last", ["0"])[0])
            page = listed[start:start + 1]
            body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                               "manifests": page}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
            self.send_header("Content-Length", str(len(body)))
            if wanted:
                self.send_header("OCI-Filters-Applied", "artifactType")
            if start + 1 < len(listed):
                following = {"last": str(start + 1), **({"artifactType": wanted} if wanted else {})}
                self.send_header("Link", f'</v2/{name}/referrers/{digest}?{urllib.parse.urlencode(following)}>; '
                                 'rel="next"')
            self.end_headers()
            self.wfile.write(body)

        def _dispatch(self) -> None:
            split = urllib.parse.urlsplit(self.path)
            found = _REFERRERS.match(split.path)
            if found and self.command == "GET":
                self._referrers(found["name"], found["digest"], urllib.parse.parse_qs(split.query))
                return
            body = self._body()
            upstream = http.client.HTTPConnection(*standin.upstream, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                upstream.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST",
                                                                                                "PATCH") else None,
                                 headers=headers)
                response = upstream.getresponse()
                data = response.read()
                extra = []
                manifest = _MANIFEST.match(split.path)
                if manifest and self.command == "PUT" and response.status == 201:
                    subject = standin.record(manifest["name"], body)
                    if subject:
                        extra.append(("OCI-Subject", subject))
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP:
                        self.send_header(name, value)
                for name, value in extra:
                    self.send_header(name, value)
                length = response.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            finally:
                upstream.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    return Handler
