"""A stand-in for Azure Resource Manager's registry GET, for tests.

``GET /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ContainerRegistry/registries/{n}
?api-version=...`` with ``Authorization: Bearer <token>`` answers like ARM: 200 with
``properties.loginServer``, 401 without a known token, 403 ``AuthorizationFailed`` when the
caller has no read access, 404 ``ResourceNotFound`` for an unknown registry, 400 without api-version.
"""
from __future__ import annotations

import threading
import urllib.parse
from http.server import ThreadingHTTPServer

from tests.support.httpserver import JsonHandler, serve_in_background, stop_server


class ArmStub:
    """registries: {resource id (any case): login server}; tokens: {bearer token: principal};
    readers: {(principal, resource id lowercased)} allowed to read; requests: what was asked."""

    def __init__(self) -> None:
        self.registries: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.readers: set[tuple[str, str]] = set()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_registry(self, resource_id: str, login_server: str, *, readers: tuple[str, ...] = ()) -> None:
        self.registries[resource_id.lower()] = login_server
        self.readers.update((p, resource_id.lower()) for p in readers)

    def start(self) -> "ArmStub":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port = serve_in_background(self._httpd, "arm-stub")
        return self

    def stop(self) -> None:
        stop_server(self._httpd)
        self._httpd = None

    def __enter__(self) -> "ArmStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _handler(arm: ArmStub):
    class Handler(JsonHandler):
        json_content_type = "application/json; charset=utf-8"

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(u.query)
            auth = self.headers.get("Authorization", "")
            principal = arm.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
            with arm._lock:
                arm.requests.append({"path": u.path, "api_version": (query.get("api-version") or [None])[0],
                                     "principal": principal})
            if principal is None:
                return self._send(401, _error("InvalidAuthenticationToken", "The access token is invalid."))
            if not query.get("api-version"):
                return self._send(400, _error("MissingApiVersionParameter",
                                              "The api-version query parameter (?api-version=) is required."))
            rid = u.path.lower()
            login = arm.registries.get(rid)
            if login is None:
                return self._send(404, _error("ResourceNotFound",
                                              f"The Resource '{u.path.rsplit('/', 3)[-3]}/registries/"
                                              f"{u.path.rsplit('/', 1)[-1]}' under resource group was not found."))
            if (principal, rid) not in arm.readers:
                return self._send(403, _error(
                    "AuthorizationFailed",
                    f"The client '{principal}' does not have authorization to perform action "
                    f"'Microsoft.ContainerRegistry/registries/read' over scope '{u.path}' or the scope is invalid."))
            name = u.path.rsplit("/", 1)[-1]
            self._send(200, {"id": u.path, "name": name, "type": "Microsoft.ContainerRegistry/registries",
                             "location": "westeurope", "sku": {"name": "Premium", "tier": "Premium"},
                             "properties": {"loginServer": login, "provisioningState": "Succeeded",
                                            "adminUserEnabled": False}})

    return Handler
