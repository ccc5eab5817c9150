"""The ARM ImportImage route driven by the real Azure SDK (azure-mgmt-containerregistry) against the
function app on the local host, Azurite and real registries: `begin_import_image(...).result()` with
only `base_url` changed, its polling, its errors, and who may call it.

The SDK's bearer-token policy refuses plain http (ServiceRequestError "Bearer token authentication is
not permitted for non-TLS protected (non-https) URLs"), and the local host speaks http, so these
clients pass `authentication_policy=LocalBearer(...)`: it sends the same `Authorization: Bearer`
header without that check. Nothing else in the SDK is replaced. In Azure, App Service Authentication
validates the token and adds X-MS-CLIENT-PRINCIPAL-ID; where a test needs that, LocalBearer adds the
header itself, standing in for it.
"""
from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlsplit

import pytest
import stamina
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import ImportImageParameters, ImportSource

from importcore.values.arm import acr_name, failure_status, parse_registry_names, registry_for_name
from importcore.values.errors import UsageError
from importcore.values.settings import Settings
from tests.support.images import Pusher, push_image, push_index
from tests.support.ports import free_port
from tests.support.skopeo import skopeo_digest

SUBSCRIPTION = "3f2a9c1e-0d4b-4c7e-9a51-2b8e6f0c7d13"
GROUP = "rg-pipelines"
API_VERSION = "2025-11-01"  # the SDK's default; any is accepted
NO_WORKER = {"AzureWebJobs.run_import.Disabled": "true"}  # jobs stay Queued until a test runs them


class Token:
    """A TokenCredential; the local host checks no token."""

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken("local-test-token", int(time.time()) + 3600)


class LocalBearer(SansIOHTTPPolicy):
    """The bearer header without the https check (see the module docstring); with `principal`, also
    the header App Service Authentication adds for a caller whose token it accepted."""

    def __init__(self, principal: str | None = None) -> None:
        self.principal = principal

    def on_request(self, request) -> None:
        request.http_request.headers["Authorization"] = "Bearer local-test-token"
        if self.principal:
            request.http_request.headers["X-MS-CLIENT-PRINCIPAL-ID"] = self.principal


class RecordingTransport(RequestsTransport):
    """The SDK's own transport; it records how long the poller chose to wait between polls."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, duration: float) -> None:
        self.sleeps.append(duration)
        super().sleep(duration)


class Sdk:
    def __init__(self, app, principal: str | None = None) -> None:
        self.transport = RecordingTransport()
        self.answers: list[tuple[str, str, int, str | None]] = []  # method, url, status, Retry-After
        self.client = ContainerRegistryManagementClient(
            Token(), SUBSCRIPTION, base_url=f"{app.url}/api", authentication_policy=LocalBearer(principal),
            transport=self.transport, polling_interval=600,  # far longer than any test: Retry-After must win
            raw_response_hook=self._record)

    def _record(self, pipeline_response) -> None:
        r = pipeline_response.http_response
        self.answers.append((r.request.method, r.request.url, r.status_code, r.headers.get("Retry-After")))

    def begin_import(self, registry_name: str, params, **kw):
        # cls: the operation URL polled last, so a test can find the job behind it
        return self.client.registries.begin_import_image(
            GROUP, registry_name, params, cls=lambda response, *_: response.http_response.request.url, **kw)


def params(source_registry, image: str, *tags: str, mode: str = "NoForce") -> ImportImageParameters:
    return ImportImageParameters(source=ImportSource(registry_uri=source_registry.host, source_image=image),
                                 target_tags=list(tags), mode=mode)


def job_id_of(operation_url: str) -> str:
    return urlsplit(operation_url).path.rsplit("/", 1)[1]


def arm_path(name: str = "local") -> str:
    return (f"/api/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry"
            f"/registries/{name}")


@pytest.fixture
def arm_app(app_host_factory, target_registry):
    """app_host_factory with `local` naming the target registry and a 1 s Retry-After."""
    def make(**env):
        settings = {"IMPORT_REGISTRY_NAMES": f"local={target_registry.host}", "IMPORT_ARM_RETRY_AFTER_SECONDS": "1"}
        return app_host_factory(**{**settings, **env})
    return make


# --- the SDK, unchanged but for base_url --------------------------------------------------------------

def test_sdk_import_succeeds_and_the_target_holds_the_source_digest(arm_app, source_registry, target_registry,
                                                                    unique_repo):
    app = arm_app()
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1")
    sdk = Sdk(app)

    operation = sdk.begin_import("local", params(source_registry, f"{unique_repo}:v1", f"{unique_repo}/copy:v1")).result()

    assert skopeo_digest(f"{target_registry.host}/{unique_repo}/copy:v1") == pushed.digest
    # The operation is the job POST /api/imports would have made: GET /api/imports/{id} shows it.
    job = app.status(job_id_of(operation))
    assert job["status"] == "Succeeded" and job["result"]["digest"] == pushed.digest
    assert job["targets"] == [f"{unique_repo}/copy:v1"]
    post = sdk.answers[0]
    assert post[:1] == ("POST",) and post[2:] == (202, "1")
    assert urlsplit(post[1]).path == arm_path() + "/importImage"
    location = urlsplit(operation)
    assert f"{location.scheme}://{location.netloc}" == app.url  # absolute, on the same host
    assert location.path == f"{arm_path()}/operationResults/{job['id']}" and location.query == f"api-version={API_VERSION}"
    assert sdk.answers[-1][2] == 200


def test_sdk_poller_waits_as_long_as_retry_after_says(arm_app, source_registry, target_registry, unique_repo):
    """The client's own polling interval is 600 s; the poller waits the 1 s our 202s carry instead."""
    app = arm_app(**NO_WORKER)
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "1.0")
    sdk = Sdk(app)

    poller = sdk.begin_import("local", params(source_registry, f"{unique_repo}:1.0", f"{unique_repo}:1.0"))
    deadline = time.monotonic() + 30
    while not sdk.transport.sleeps:  # the poller saw the job Queued (202) and is waiting to ask again
        assert time.monotonic() < deadline, sdk.answers
        time.sleep(0.05)
    assert not poller.done()
    [job] = [e["RowKey"] for e in app.entities() if e["PartitionKey"] == "import"]
    assert app.service().process_message(json.dumps({"v": 1, "jobId": job})) == "succeeded"  # the worker's part, by hand

    poller.result(timeout=30)

    assert poller.done() and poller.status() == "Succeeded"
    assert sdk.transport.sleeps and set(sdk.transport.sleeps) == {1.0}
    polls = [a for a in sdk.answers if a[0] == "GET"]
    assert polls[-1][2] == 200 and all(a[2:] == (202, "1") for a in polls[:-1])
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:1.0") == pushed.digest


def test_sdk_noforce_conflict_raises_http_response_error_with_our_message(arm_app, source_registry,
                                                                          target_registry, unique_repo):
    app = arm_app()
    with Pusher(source_registry) as p:
        push_image(p, unique_repo, "stable")
    with Pusher(target_registry) as p:
        existing = push_image(p, unique_repo, "stable")
    poller = Sdk(app).begin_import("local", params(source_registry, f"{unique_repo}:stable", f"{unique_repo}:stable"))

    with pytest.raises(HttpResponseError) as caught:
        poller.result()

    exc = caught.value
    assert exc.status_code == 409
    assert exc.error is not None and exc.error.code == "TagConflict"
    assert f"{unique_repo}:stable" in exc.error.message and "\n" not in exc.error.message
    assert exc.error.message in str(exc)
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:stable") == existing.digest  # untouched


def test_sdk_invalid_body_raises_400_naming_the_field(arm_app, source_registry, unique_repo):
    app = arm_app(**NO_WORKER)
    with pytest.raises(HttpResponseError) as caught:
        Sdk(app).begin_import("local", params(source_registry, f"{unique_repo}:1.0", "team/app:bad tag!"))
    assert caught.value.status_code == 400
    assert (caught.value.error.code, caught.value.error.target) == ("InvalidRequest", "targetTags")
    assert app.peek() == [] and app.entities() == []


def test_sdk_unknown_registry_name_raises_404(arm_app, source_registry, unique_repo):
    app = arm_app(**NO_WORKER)
    with pytest.raises(ResourceNotFoundError) as caught:
        Sdk(app).begin_import("otherreg", params(source_registry, f"{unique_repo}:1.0", f"{unique_repo}:1.0"))
    assert caught.value.status_code == 404 and caught.value.error.code == "ResourceNotFound"
    assert "otherreg" in caught.value.error.message and GROUP in caught.value.error.message
    assert app.peek() == [] and app.entities() == []


def test_sdk_imports_into_the_registry_its_name_maps_to(arm_app, registry_factory, source_registry,
                                                        target_registry, unique_repo):
    """`{registryName}` picks the target: a name from IMPORT_REGISTRY_NAMES imports into that registry,
    not into IMPORT_TARGET_REGISTRY."""
    other = registry_factory()
    app = arm_app(IMPORT_REGISTRY_NAMES=f"local={target_registry.host},Mirror-2={other.host}")
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "2.0")

    operation = Sdk(app).begin_import("mirror-2", params(source_registry, f"{unique_repo}:2.0", "mirrored/app:2.0")).result()

    assert skopeo_digest(f"{other.host}/mirrored/app:2.0") == pushed.digest
    with Pusher(target_registry) as p:
        assert p.get_manifest("mirrored/app", "2.0").status_code == 404
    job_id = job_id_of(operation)
    assert app.service().store.get(job_id).request["targetRegistry"] == other.host
    # An operation is found only under the registry it imports into.
    r = app.http.get(f"{arm_path('local')}/operationResults/{job_id}", params={"api-version": API_VERSION})
    assert r.status_code == 404 and r.json()["error"]["code"] == "ResourceNotFound"


# --- the routes' answers, over plain HTTP -------------------------------------------------------------

def test_missing_api_version_is_400(arm_app, source_registry, unique_repo):
    app = arm_app(**NO_WORKER)
    body = {"source": {"registryUri": source_registry.host, "sourceImage": f"{unique_repo}:1"}, "targetTags": []}
    r = app.http.post(f"{arm_path()}/importImage", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"
    r = app.http.get(f"{arm_path()}/operationResults/{uuid.uuid4()}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"
    assert app.peek() == [] and app.entities() == []


def test_operation_urls_follow_the_job_in_both_forms(arm_app, source_registry, unique_repo):
    """operationResults (Location form) and operationStatuses (Azure-AsyncOperation form) of one job,
    Queued then Succeeded; the paths are matched case-insensitively, as ARM does."""
    app = arm_app(**NO_WORKER)
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "3.0")
    body = {"source": {"registryUri": source_registry.host, "sourceImage": f"{unique_repo}:3.0"},
            "targetTags": [f"{unique_repo}:3.0"]}
    r = app.http.post(f"{arm_path().lower()}/importimage", params={"api-version": API_VERSION}, json=body)
    assert r.status_code == 202, r.text
    assert r.headers["retry-after"] == "1"
    job_id = job_id_of(r.headers["location"])
    results = r.headers["location"]
    statuses = results.replace("/operationResults/", "/operationStatuses/")

    queued = app.http.get(results)
    assert (queued.status_code, queued.headers["retry-after"], queued.headers["location"]) == (202, "1", results)
    status = app.http.get(statuses)
    assert status.status_code == 200 and status.headers["retry-after"] == "1"
    assert status.json()["status"] == "InProgress" and status.json()["name"] == job_id

    assert app.service().process_message(json.dumps({"v": 1, "jobId": job_id})) == "succeeded"
    done = app.http.get(results)
    assert done.status_code == 200 and "retry-after" not in done.headers
    status = app.http.get(statuses).json()
    assert status["status"] == "Succeeded" and status["percentComplete"] == 100.0
    assert status["properties"]["digest"] == pushed.digest and "error" not in status
    for path in (f"operationResults/{uuid.uuid4()}", "operationResults/not-a-job", f"somethingElse/{job_id}"):
        r = app.http.get(f"{arm_path()}/{path}", params={"api-version": API_VERSION})
        assert r.status_code == 404 and r.json()["error"]["code"] == "ResourceNotFound", path


def test_a_failure_retried_until_out_of_attempts_is_5xx_and_failed(arm_app, unique_repo):
    """A source nobody listens on: the one allowed attempt fails (ConnectionFailed, retryable), the job
    gives up, and the Location form answers 502 with our code; the status form says Failed."""
    host = f"127.0.0.1:{free_port()}"
    app = arm_app(IMPORT_MAX_ATTEMPTS="1", **NO_WORKER)
    body = {"source": {"registryUri": host, "sourceImage": f"{unique_repo}:1"}, "targetTags": [f"{unique_repo}:1"]}
    r = app.http.post(f"{arm_path()}/importImage", params={"api-version": API_VERSION}, json=body)
    assert r.status_code == 202, r.text
    job_id = job_id_of(r.headers["location"])

    with stamina.set_testing(True, attempts=1):  # the in-process retries off: the fault surfaces at once
        assert app.service().process_message(json.dumps({"v": 1, "jobId": job_id})) == "failed"

    failed = app.http.get(r.headers["location"])
    assert failed.status_code == 502 and "retry-after" not in failed.headers
    error = failed.json()["error"]
    assert error["code"] == "ConnectionFailed" and error["message"].startswith("gave up after 1 attempts")
    status = app.http.get(r.headers["location"].replace("/operationResults/", "/operationStatuses/")).json()
    assert status["status"] == "Failed" and status["error"] == error
    assert app.status(job_id)["error"]["code"] == "ConnectionFailed"


# --- who may call: App Service Authentication -------------------------------------------------------

def test_with_app_service_authentication_on_a_caller_needs_its_principal(arm_app, source_registry,
                                                                         target_registry, unique_repo):
    """WEBSITE_AUTH_ENABLED=True (App Service Authentication on, AllowAnonymous): a request it did not
    authenticate arrives without X-MS-CLIENT-PRINCIPAL-ID and is refused (401); with it, accepted."""
    app = arm_app(WEBSITE_AUTH_ENABLED="True")
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "4.0")
    request = params(source_registry, f"{unique_repo}:4.0", f"{unique_repo}:4.0")

    with pytest.raises(ClientAuthenticationError) as caught:
        Sdk(app).begin_import("local", request)
    assert caught.value.status_code == 401 and caught.value.error.code == "AuthenticationFailed"
    assert app.peek() == [] and app.entities() == []
    r = app.http.get(f"{arm_path()}/operationStatuses/{uuid.uuid4()}", params={"api-version": API_VERSION})
    assert r.status_code == 401

    operation = Sdk(app, principal="6b1e3f0a-5c2d-4e8f-9a7b-1c0d2e3f4a5b").begin_import("local", request).result()

    assert app.status(job_id_of(operation))["status"] == "Succeeded"
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:4.0") == pushed.digest


@pytest.mark.parametrize("opted_out", [False, True], ids=["refused", "opted-out"])
@pytest.mark.parametrize("not_local", [{"WEBSITE_SITE_NAME": "regimport-app"}, {"FUNCTIONS_CORETOOLS_ENVIRONMENT": ""}],
                         ids=["in-azure", "no-local-host-marker"])
def test_without_app_service_authentication_the_route_is_refused_unless_opted_out(arm_app, source_registry,
                                                                                   unique_repo, not_local, opted_out):
    """Off a local host with App Service Authentication off, the anonymous route would be open to anyone:
    403 saying so. IMPORT_ARM_ALLOW_ANONYMOUS=true is the explicit way to accept such callers."""
    body = {"source": {"registryUri": source_registry.host, "sourceImage": f"{unique_repo}:1"},
            "targetTags": [f"{unique_repo}:1"]}
    app = arm_app(**not_local, **NO_WORKER, **({"IMPORT_ARM_ALLOW_ANONYMOUS": "true"} if opted_out else {}))

    r = app.http.post(f"{arm_path()}/importImage", params={"api-version": API_VERSION}, json=body)

    if opted_out:
        assert r.status_code == 202, r.text
        return
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "AuthenticationNotConfigured" and "App Service Authentication" in error["message"]
    assert app.peek() == [] and app.entities() == []


def test_the_local_host_says_it_authenticates_nobody(arm_app, caplog):
    caplog.set_level("INFO", logger="importcore.devhost")
    arm_app(**NO_WORKER)
    [started] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Host started")]
    assert "no App Service Authentication" in started and "arm_import_image" in started


# --- the values behind it ----------------------------------------------------------------------------

def test_registry_names_setting():
    assert parse_registry_names("local=127.0.0.1:5000, Prod=https://ProdAcr.azurecr.io/;x=y.example:443") == (
        ("local", "127.0.0.1:5000"), ("prod", "prodacr.azurecr.io"), ("x", "y.example:443"))
    assert parse_registry_names("") == parse_registry_names(None) == ()
    for bad in ("local", "=127.0.0.1", "local=", "lo/cal=127.0.0.1", "a=b.example,A=c.example", "a=bad host"):
        with pytest.raises(UsageError) as caught:
            Settings.from_env({"IMPORT_REGISTRY_NAMES": bad})
        assert "IMPORT_REGISTRY_NAMES" in caught.value.message


def test_registry_name_to_login_server():
    assert acr_name("myacr.azurecr.io") == "myacr" and acr_name("MyAcr.azurecr.cn") == "myacr"
    assert acr_name("myacr.westeurope.data.azurecr.io") is None and acr_name("127.0.0.1:5000") is None
    names = (("local", "127.0.0.1:5000"),)
    assert registry_for_name("MYACR", target_registry="myacr.azurecr.io", names=names) == "myacr.azurecr.io"
    assert registry_for_name("myacr", target_registry="myacr", names=()) == "myacr.azurecr.io"  # a bare ACR name
    assert registry_for_name("Local", target_registry="myacr.azurecr.io", names=names) == "127.0.0.1:5000"
    assert registry_for_name("other", target_registry="myacr.azurecr.io", names=names) is None
    assert registry_for_name("127", target_registry="127.0.0.1:5000", names=()) is None  # not an ACR: no name
    assert registry_for_name("myacr", target_registry=None, names=()) is None


@pytest.mark.parametrize(("error", "status"), [
    ({"code": "InvalidRequest"}, 400), ({"code": "HostNotAllowed"}, 400), ({"code": "LimitExceeded"}, 400),
    ({"code": "TagConflict"}, 409), ({"code": "NotFound", "status": 404}, 404),
    ({"code": "Unauthorized", "status": 401}, 403), ({"code": "DigestMismatch"}, 422),
    ({"code": "InvalidManifest"}, 422), ({"code": "RegistryError", "status": 400}, 400),
    ({"code": "RegistryError", "status": 503}, 502), ({"code": "RegistryError", "status": 429}, 502),
    ({"code": "RegistryError"}, 400),  # no status: a refusal (too many redirects), never retried
    ({"code": "ConnectionFailed"}, 502), ({"code": "DeadlineReached"}, 504), ({"code": "InternalError"}, 500),
    ({"code": "WorkerLost"}, 500), ({}, 500), (None, 500)])
def test_failure_status(error, status):
    """Permanent causes are 4xx (never 401: that would blame the ARM caller's own token); causes retried
    until the attempts ran out are 5xx."""
    assert failure_status(error) == status


def test_settings_of_the_arm_route():
    s = Settings.from_env({})
    assert (s.arm_retry_after_seconds, s.arm_allow_anonymous, s.easy_auth_enabled, s.in_azure, s.local_host) == (
        10, False, False, False, False)
    s = Settings.from_env({"IMPORT_ARM_RETRY_AFTER_SECONDS": "3", "IMPORT_ARM_ALLOW_ANONYMOUS": "True",
                           "WEBSITE_AUTH_ENABLED": "True", "WEBSITE_SITE_NAME": "app",
                           "FUNCTIONS_CORETOOLS_ENVIRONMENT": "true"})
    assert (s.arm_retry_after_seconds, s.arm_allow_anonymous, s.easy_auth_enabled, s.in_azure, s.local_host) == (
        3, True, True, True, True)
    for bad in ({"IMPORT_ARM_RETRY_AFTER_SECONDS": "0"}, {"IMPORT_ARM_ALLOW_ANONYMOUS": "maybe"}):
        with pytest.raises(UsageError):
            Settings.from_env(bad)
