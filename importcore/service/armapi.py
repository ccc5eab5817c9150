"""ACR's ImportImage as Azure Resource Manager serves it, so an Azure SDK pointed at this app
(`base_url=<app>/api`) imports with `registries.begin_import_image(...)` unchanged.

    POST {prefix}/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ContainerRegistry/registries/{name}
         /importImage?api-version=V                      the ImportImage body (validated as POST /api/imports)
      -> 202, Location: {same}/registries/{name}/operationResults/{job id}?api-version=V, Retry-After
    GET  .../registries/{name}/operationResults/{id}    Location polling (ARMPolling): 202 + Retry-After while
                                                         Queued/Running, 200 Succeeded, the ARM error when Failed
                                                         (4xx permanent cause, 5xx retried until out of attempts)
    GET  .../registries/{name}/operationStatuses/{id}   the Azure-AsyncOperation form: 200 {"status": "InProgress"
                                                         | "Succeeded" | "Failed", "error": ...}

`{name}` picks the target registry: a name from IMPORT_REGISTRY_NAMES, or the ACR name of
IMPORT_TARGET_REGISTRY; anything else is 404. The subscription and resource group are taken as
given. The routes take no function key (an ARM client sends a bearer token): App Service
Authentication checks the token and the caller is refused unless it did (`_refusal`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from ..values.arm import failure_status, registry_for_name
from ..values.errors import UsageError
from ..values.reference import parse_registry
from .api import Reply, error_reply
from .store import Job, JobStatus

__all__ = ["ArmApi", "PRINCIPAL_ID_HEADER"]

log = logging.getLogger("importcore.service")

# Set by App Service Authentication for a caller it authenticated; it strips client-sent copies.
PRINCIPAL_ID_HEADER = "x-ms-client-principal-id"
RESULTS, STATUSES = "operationResults", "operationStatuses"
_IN_PROGRESS = (JobStatus.QUEUED, JobStatus.RUNNING)


class ArmApi:
    """The ARM routes over an ImportService (its settings, store and submit path)."""

    def __init__(self, service) -> None:
        self.service = service
        self.settings = service.settings

    def import_image(self, url: str, route: Mapping[str, str], query: Mapping[str, str],
                     headers: Mapping[str, str], body: bytes) -> Reply:
        headers = _lower(headers)
        registry = self._admit(route, query, headers)
        if isinstance(registry, Reply):
            return registry
        accepted = self.service.accept(body, registry)
        if isinstance(accepted, Reply):
            return accepted
        log.info("job %s: submitted through the ARM route for %s by principal %s", accepted.id, registry,
                 headers.get(PRINCIPAL_ID_HEADER) or "(none: not authenticated)")
        location = _operation_url(url, headers, 1, RESULTS, accepted.id, query["api-version"])
        return Reply(202, {}, (("Location", location), ("Retry-After", self._retry_after())))

    def operation(self, url: str, route: Mapping[str, str], query: Mapping[str, str],
                  headers: Mapping[str, str]) -> Reply:
        """GET .../operationResults/{id} or .../operationStatuses/{id}."""
        headers = _lower(headers)
        registry = self._admit(route, query, headers)
        if isinstance(registry, Reply):
            return registry
        kind = {RESULTS.lower(): RESULTS, STATUSES.lower(): STATUSES}.get(route.get("operationKind", "").lower())
        job = self._job(route.get("operationId", ""), registry) if kind else None
        if job is None:
            return error_reply(404, "ResourceNotFound", f"no operation {route.get('operationId', '')[:64]!r} "
                               f"of registry {route.get('registryName', '')!r}")
        if kind == RESULTS:
            return self._result(job, url, headers, query["api-version"])
        return self._status(job, url)

    # -- answers -------------------------------------------------------------------------------------

    def _result(self, job: Job, url: str, headers: Mapping[str, str], api_version: str) -> Reply:
        """Location polling: 202 while it runs, 200 once it succeeded, the ARM error once it failed."""
        if job.status in _IN_PROGRESS:
            location = _operation_url(url, headers, 2, RESULTS, job.id, api_version)
            return Reply(202, {}, (("Location", location), ("Retry-After", self._retry_after())))
        if job.status == JobStatus.SUCCEEDED:
            return Reply(200, {})
        return _failure(job)

    def _status(self, job: Job, url: str) -> Reply:
        """The Azure-AsyncOperation form: always 200, the outcome in the body."""
        status = "InProgress" if job.status in _IN_PROGRESS else job.status
        body: dict = {"id": urlsplit(url).path, "name": job.id, "status": status, "startTime": job.created_at}
        progress = job.progress or {}
        if status == JobStatus.SUCCEEDED:
            body.update(endTime=job.updated_at, percentComplete=100.0, properties=job.result)
        elif status == JobStatus.FAILED:
            body.update(endTime=job.updated_at, error=_failure(job).body["error"])
        elif progress.get("bytesTotal"):
            body["percentComplete"] = round(100.0 * progress.get("bytesDone", 0) / progress["bytesTotal"], 1)
        headers = (("Retry-After", self._retry_after()),) if status == "InProgress" else ()
        return Reply(200, body, headers)

    # -- checks --------------------------------------------------------------------------------------

    def _admit(self, route: Mapping[str, str], query: Mapping[str, str], headers: Mapping[str, str]) -> str | Reply:
        """The registry the request is about, once the caller, api-version and name pass; else the refusal."""
        return self._refusal(headers) or _missing_api_version(query) or self._registry(route)

    def _refusal(self, headers: Mapping[str, str]) -> Reply | None:
        """None when the caller may use the ARM routes; else the 401/403 that says why not.

        With App Service Authentication on, it sets the principal header for a caller whose token it
        accepted (and removes any the client sent): no header, no access. Without it the routes would
        be open to anyone, so they are refused, except on the local host (Core Tools or devhost, which
        authenticate nobody) and when IMPORT_ARM_ALLOW_ANONYMOUS says something else authenticates."""
        s = self.settings
        if s.arm_allow_anonymous:
            return None
        if s.easy_auth_enabled:
            if headers.get(PRINCIPAL_ID_HEADER, "").strip():
                return None
            log.warning("ARM route: refused a caller that App Service Authentication did not authenticate")
            return error_reply(401, "AuthenticationFailed", "this route needs an Entra ID bearer token for the "
                               "app's audience, accepted by App Service Authentication; the request had none")
        if s.local_host and not s.in_azure:
            return None
        log.warning("ARM route: refused, App Service Authentication is off (WEBSITE_AUTH_ENABLED is not true)")
        return error_reply(403, "AuthenticationNotConfigured", "the ARM route is refused because App Service "
                           "Authentication (Entra ID) is not on for this app; turn it on, or set "
                           "IMPORT_ARM_ALLOW_ANONYMOUS=true if something in front of the app authenticates callers")

    def _registry(self, route: Mapping[str, str]) -> str | Reply:
        name = route.get("registryName", "")
        found = registry_for_name(name, target_registry=self.settings.target_registry,
                                  names=self.settings.registry_names)
        if found is None:
            group = route.get("resourceGroupName", "")
            return error_reply(404, "ResourceNotFound", f"The Resource 'Microsoft.ContainerRegistry/registries/"
                               f"{name[:64]}' under resource group '{group[:90]}' was not found: this importer "
                               "knows the ACR name of IMPORT_TARGET_REGISTRY and the names in IMPORT_REGISTRY_NAMES")
        return found

    def _job(self, job_id: str, registry: str) -> Job | None:
        """The job, if it imports into `registry` (an operation is only found under its own registry)."""
        try:
            uuid.UUID(job_id)
        except (ValueError, TypeError, AttributeError):
            return None
        job = self.service.store.get(job_id)
        if job is None:
            return None
        try:
            same = parse_registry(job.request.get("targetRegistry") or "") == registry
        except UsageError:
            same = False
        return job if same else None

    def _retry_after(self) -> str:
        return str(self.settings.arm_retry_after_seconds)


def _failure(job: Job) -> Reply:
    error = job.error or {}
    message = error.get("message") or "the import failed"
    return error_reply(failure_status(error), error.get("code") or "ImportFailed", message, error.get("target"))


def _missing_api_version(query: Mapping[str, str]) -> Reply | None:
    if (query.get("api-version") or "").strip():
        return None
    return error_reply(400, "MissingApiVersionParameter",
                       "The api-version query parameter (?api-version=) is required for all requests.")


def _operation_url(url: str, headers: Mapping[str, str], drop: int, kind: str, job_id: str, api_version: str) -> str:
    """The absolute URL of the operation's `kind` resource: the request's URL with its last `drop`
    path segments (importImage, or operationResults/{id}) replaced; same scheme, host and prefix."""
    parts = urlsplit(url)
    registry_path = parts.path.rstrip("/").rsplit("/", drop)[0]
    scheme = parts.scheme
    if headers.get("x-forwarded-proto", "").lower() == "https":  # TLS ended in front of the app
        scheme = "https"
    return f"{scheme}://{parts.netloc}{registry_path}/{kind}/{job_id}?api-version={quote(api_version, safe='')}"


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
