"""A source registry given by its Azure resource ID (az acr import --registry, source.resourceId).

Azure Resource Manager knows the registry's login server:
``GET {arm}{resourceId}?api-version=2023-07-01`` -> ``properties.loginServer``. The identity needs a
role with Microsoft.ContainerRegistry/registries/read there (Reader, Contributor, ...) to ask, and
AcrPull to pull afterwards.
"""

from __future__ import annotations

import json

import httpx

from ..auth.acr import TokenCredential
from ..net.bodies import MAX_JSON_BODY, send_capped
from ..values.errors import AuthError, ImporterError, NotFoundError, RegistryError, TransportError, UsageError
from ..values.reference import parse_registry
from ..values.resourceid import RegistryResourceId, parse_resource_id
from ..values.settings import DEFAULT_ARM_ENDPOINT
from ..net.retry import parse_retry_after

__all__ = ["API_VERSION", "ARM_ENDPOINT", "DEFAULT_ARM_ENDPOINT", "RegistryResourceId", "parse_resource_id",
           "resolve_login_server"]

ARM_ENDPOINT = "IMPORT_ARM_ENDPOINT"  # the setting (Settings.arm_endpoint); sovereign clouds and tests change it
API_VERSION = "2023-07-01"  # Microsoft.ContainerRegistry GA API version


def _endpoint(arm_endpoint: str) -> httpx.URL:
    url = httpx.URL(arm_endpoint.rstrip("/"))
    loopback = url.host in ("127.0.0.1", "::1", "localhost")
    # The ARM token can read everything the identity can: never over plain http, except to a
    # stand-in on this machine (tests, local emulators).
    if url.scheme != "https" and not (url.scheme == "http" and loopback):
        raise UsageError(f"setting {ARM_ENDPOINT}={arm_endpoint!r} must be an https URL", target=ARM_ENDPOINT)
    if not url.host:
        raise UsageError(f"setting {ARM_ENDPOINT}={arm_endpoint!r} has no host", target=ARM_ENDPOINT)
    return url


def resolve_login_server(resource_id: str | RegistryResourceId, credential: TokenCredential, http: httpx.Client,
                         arm_endpoint: str = DEFAULT_ARM_ENDPOINT, *, target: str = "source.resourceId") -> str:
    """The registry's login server (e.g. myreg.azurecr.io), as ARM reports it."""
    rid = resource_id if isinstance(resource_id, RegistryResourceId) else parse_resource_id(resource_id, target=target)
    base = _endpoint(arm_endpoint)
    token = credential.get_token(f"{base.scheme}://{base.netloc.decode()}/.default").token
    url = base.copy_with(path=base.path.rstrip("/") + str(rid), params={"api-version": API_VERSION})
    where = f"Azure Resource Manager ({base.host}) for {rid}"
    request = http.build_request("GET", url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    try:
        body, response = send_capped(http, request, MAX_JSON_BODY)
    except httpx.HTTPError as exc:
        raise TransportError(f"{where}: {exc.__class__.__name__}", target=target) from None
    data = _json(body or b"")  # an over-long answer reads as no JSON
    status = response.status_code
    code, message = _arm_error(data)
    detail = f" {code}" + (f": {message}" if message else "") if code else ""
    if status == 403:
        raise AuthError(f"the identity lacks Reader/AcrPull on {rid}: {where} answered 403{detail}",
                        status=403, codes=("DENIED",), target=target)
    if status == 401:
        raise AuthError(f"{where} refused the identity's token (401){detail}", status=401,
                        codes=("UNAUTHORIZED",), target=target)
    if status == 404:
        raise NotFoundError(f"no container registry {rid}: {where} answered 404{detail}", status=404,
                            codes=("NAME_UNKNOWN",), target=target)
    if status != 200:
        raise RegistryError(f"{where} answered {status}{detail}", status=status,
                            retry_after=parse_retry_after(response.headers.get("retry-after")), target=target)
    props = data.get("properties") if isinstance(data, dict) else None
    login = props.get("loginServer") if isinstance(props, dict) else None
    if not isinstance(login, str) or not login:
        state = props.get("provisioningState") if isinstance(props, dict) else None
        raise ImporterError(f"{where} reported no loginServer" + (f" (provisioningState {state})" if state else ""),
                            target=target)
    try:
        return parse_registry(login.lower())
    except UsageError:
        raise ImporterError(f"{where} reported an invalid loginServer {login[:100]!r}", target=target) from None


def _json(body: bytes) -> object:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _arm_error(data: object) -> tuple[str, str]:
    """ARM's {"error": {"code", "message"}} (ARM RPC, common error response)."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", ""
    lines = str(error.get("message") or "").strip().splitlines()
    return str(error.get("code") or "")[:100], (lines[0][:300] if lines else "")
