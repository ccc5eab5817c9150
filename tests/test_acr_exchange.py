"""ACR's Entra ID exchange and sources by resource ID, against stand-ins speaking the real protocols.

A real Distribution registry (`auth: token`) trusts AcrTokenService, which answers ACR's
/oauth2/exchange and /oauth2/token; the identity is a static credential with azure-identity's
get_token interface. RegistryAuth is wired to the provider the way flow.py's token_provider hook
will be (ProviderAuth below is that hook, in the test only until flow.py has it).
"""
from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from importcore.registry.arm import API_VERSION, DEFAULT_ARM_ENDPOINT, parse_resource_id, resolve_login_server
from importcore.auth import RegistryAuth, parse_challenges
from importcore.auth.acr import (AccessToken, AcrTokenProvider, is_acr_login_server, is_entra_token, jwt_claims,
                                 jwt_expiry)
from importcore.auth.challenge import Challenge
from importcore.auth.identity import StaticTokenCredential, build_credential
from importcore.engine.imagecopy import CopyOptions, copy_image
from importcore.values.errors import AuthError, NotFoundError, RegistryError, TransportError, UsageError
from importcore.net.hostpolicy import HostPolicy
from importcore.values.reference import Reference, TargetSpec
from importcore.registry.client import RegistryClient
from importcore.net.transport import make_http_client
from importcore.values.settings import Settings
from tests.support.acrtokens import AcrPusher, AcrTokenService, StaticCredential, unsigned_jwt
from tests.support.armstub import ArmStub
from tests.support.images import Pusher, push_image, push_index, sha256
from tests.support.registries import RegistryServer

PRINCIPAL = "mi-importer"
SUB = "00000000-1111-2222-3333-444444444444"


# ---- fixtures and helpers ------------------------------------------------------------------------

class ProviderAuth(RegistryAuth):
    """RegistryAuth with the token_provider hook proposed for flow.py (same lines, as a subclass)."""

    def __init__(self, registry: str, *, http: httpx.Client, token_provider, plain_http: bool = False) -> None:
        super().__init__(registry, None, http=http, plain_http=plain_http)
        self.token_provider = token_provider

    def _fetch_token(self, challenge, scopes):
        scopes = list(scopes) or [s for s in challenge.params.get("scope", "").split(" ") if s]
        self.token_requests += 1
        token, valid_for = self.token_provider(challenge, scopes)
        return token, self._clock() + valid_for


class Clock:
    """Wall clock plus an offset the test moves forward. The stand-in moves with it (its tokens'
    lifetimes grow by the offset), because the registry checks `exp` against real time."""

    def __init__(self, service: AcrTokenService) -> None:
        self.service = service
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def set(self, offset: float) -> None:
        self.offset = self.service.clock_offset = offset


POLICY = HostPolicy(plain_http=("127.0.0.1",), allowed_private=("127.0.0.1",))


@pytest.fixture(scope="module")
def acr(tmp_path_factory):
    """An 'ACR': Distribution with auth: token behind the stand-in token service (tenant-a)."""
    service = AcrTokenService(tmp_path_factory.mktemp("acr-tokens"), service="acr-standin.example").start()
    registry = RegistryServer(tmp_path_factory.mktemp("acr-registry"), "token", token_server=service)
    try:
        registry.start()
        yield registry
    finally:
        registry.stop()
        service.stop()


@pytest.fixture(autouse=True)
def _service_clock_back_to_real_time(request):
    yield
    if "acr" in request.fixturenames:
        request.getfixturevalue("acr").token_server.clock_offset = 0.0


@pytest.fixture
def http():
    with make_http_client(POLICY) as client:
        yield client


def _client(registry: str, http: httpx.Client, provider=None, role="target") -> RegistryClient:
    client = RegistryClient(registry, http=http, policy=POLICY, role=role)
    if provider is not None:
        client.auth = ProviderAuth(registry, http=http, token_provider=provider, plain_http=True)
    return client


def _import(http, provider, source_host: str, repo: str, tag: str, target_host: str, *, source_provider=None,
            target_repo: str | None = None):
    source = _client(source_host, http, source_provider, role="source")
    target = _client(target_host, http, provider)
    return copy_image(source=source, ref=Reference.parse(f"{source_host}/{repo}:{tag}"), target=target,
                      targets=[TargetSpec(target_repo or repo, tag)], options=CopyOptions())


def _digest_in(acr, repo: str, tag: str) -> str:
    """The digest of repo:tag read straight from the registry, with a token minted by the stand-in."""
    token = acr.token_server.issue("checker", [f"repository:{repo}:pull"])
    accept = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json"])
    r = httpx.get(f"{acr.url}/v2/{repo}/manifests/{tag}", headers={"Authorization": f"Bearer {token}",
                                                                   "Accept": accept})
    assert r.status_code == 200, r.text
    return sha256(r.content)


def _provider(acr, http, credential, clock=time.time) -> AcrTokenProvider:
    return AcrTokenProvider(credential, registry=acr.host, http=http, plain_http=True, clock=clock)


# ---- the import through the exchange -------------------------------------------------------------

def test_import_into_acr_through_entra_exchange(acr, source_registry, http, unique_repo):
    service = acr.token_server
    with Pusher(source_registry) as p:
        v1 = push_index(p, unique_repo, "v1")
        v2 = push_image(p, unique_repo, "v2")
    credential = StaticCredential(service.entra_token(PRINCIPAL))
    provider = _provider(acr, http, credential)
    exchanges0, grants0 = len(service.exchanges), len(service.token_grants)

    result = _import(http, provider, source_registry.host, unique_repo, "v1", acr.host)
    assert result.digest == v1.digest
    assert _digest_in(acr, unique_repo, "v1") == v1.digest
    assert credential.calls == [("https://containerregistry.azure.net/.default",)]
    new = service.exchanges[exchanges0:]
    assert [(e["status"], e["service"], e["tenant"]) for e in new] == [(200, "acr-standin.example", "tenant-a")]
    grants = service.token_grants[grants0:]
    assert grants and all(g["status"] == 200 for g in grants)
    assert {s[1] for g in grants for s in g["scopes"]} == {unique_repo}

    # A second import into the same repository, by new clients sharing the provider (as the worker
    # does): the cached access token covers it; no exchange, no token request.
    grants1 = len(service.token_grants)
    assert _import(http, provider, source_registry.host, unique_repo, "v2", acr.host).digest == v2.digest
    assert _digest_in(acr, unique_repo, "v2") == v2.digest
    assert len(service.exchanges) == exchanges0 + 1 and len(service.token_grants) == grants1
    assert provider.exchanges == 1 and len(credential.calls) == 1


def test_tokens_reused_until_near_expiry_then_renewed(acr, source_registry, http, unique_repo):
    # stand-in lifetimes: access 3600 s, refresh 10800 s; renewal starts 300 s before exp
    service = acr.token_server
    with Pusher(source_registry) as p:
        images = [push_image(p, unique_repo, f"v{i}", layers=[512]) for i in range(5)]
    clock = Clock(service)
    credential = StaticCredential(service.entra_token(PRINCIPAL, expires_in=86400))
    provider = _provider(acr, http, credential, clock)

    def run(i: int) -> tuple[int, int]:
        assert _import(http, provider, source_registry.host, unique_repo, f"v{i}", acr.host).digest == images[i].digest
        assert _digest_in(acr, unique_repo, f"v{i}") == images[i].digest
        return provider.exchanges, provider.token_requests

    exchanges, grants = run(0)
    assert exchanges == 1 and grants >= 1
    clock.set(3200)  # 100 s before the access token's renewal point: still reused
    assert run(1) == (1, grants)
    clock.set(3400)  # past it: new access tokens from the same refresh token
    exchanges2, grants2 = run(2)
    assert exchanges2 == 1 and grants2 > grants
    clock.set(10400)  # refresh token not yet due (renews at 10500); access tokens due again
    exchanges3, grants3 = run(3)
    assert exchanges3 == 1 and grants3 > grants2
    # The refresh token is only used when an access token is due: at 14000 both are (access tokens
    # from 10400 renew at 13700, the refresh token from 0 at 10500), so this takes a new exchange.
    clock.set(14000)
    exchanges4, grants4 = run(4)
    assert exchanges4 == 2 and grants4 > grants3
    assert len(credential.calls) == 2  # one Entra token per exchange


def test_revoked_refresh_token_is_exchanged_again_once(acr, source_registry, http, unique_repo):
    service = acr.token_server
    with Pusher(source_registry) as p:
        a = push_image(p, unique_repo, "a", layers=[256])
        b = push_image(p, unique_repo, "b", layers=[256])
    clock = Clock(service)
    provider = _provider(acr, http, StaticCredential(service.entra_token(PRINCIPAL)), clock)
    assert _import(http, provider, source_registry.host, unique_repo, "a", acr.host).digest == a.digest
    service.revoke_refresh_tokens()
    clock.set(3400)  # access tokens due; the cached refresh token now answers 401
    before = len(service.token_grants)
    assert _import(http, provider, source_registry.host, unique_repo, "b", acr.host).digest == b.digest
    statuses = [g["status"] for g in service.token_grants[before:]]
    assert statuses[0] == 401 and statuses.count(401) == 1 and statuses[-1] == 200
    assert provider.exchanges == 2


def test_concurrent_callers_share_one_exchange_and_one_token(acr, http, unique_repo):
    service = acr.token_server
    credential = StaticCredential(service.entra_token(PRINCIPAL))
    provider = _provider(acr, http, credential)
    challenge = Challenge("bearer", {"realm": service.realm, "service": service.service})
    scopes = [f"repository:{unique_repo}:pull,push"]
    with ThreadPoolExecutor(16) as pool:
        tokens = list(pool.map(lambda _: provider(challenge, scopes)[0], range(64)))
    assert len(set(tokens)) == 1
    assert provider.exchanges == 1 and provider.token_requests == 1 and len(credential.calls) == 1
    assert jwt_claims(tokens[0])["access"] == [{"type": "repository", "name": unique_repo,
                                                 "actions": ["pull", "push"]}]


def test_entra_token_of_another_tenant_fails_with_one_clear_line(acr, source_registry, http, unique_repo):
    service = acr.token_server
    with Pusher(source_registry) as p:
        push_image(p, unique_repo, "v1", layers=[128])
    provider = _provider(acr, http, StaticCredential(service.entra_token(PRINCIPAL, tenant="tenant-b")))
    with pytest.raises(AuthError) as err:
        _import(http, provider, source_registry.host, unique_repo, "v1", acr.host)
    message = str(err.value)
    assert "/oauth2/exchange answered 401" in message and "tenant" in message and acr.host in message
    assert "\n" not in message
    assert service.entra_tokens and not any(t in message for t in service.entra_tokens)


def test_password_that_is_an_entra_token_works_as_static_credential(acr, source_registry, http, unique_repo):
    """az acr import's cross-tenant form: the 'password' is an Entra token for the source's tenant."""
    service = acr.token_server
    with AcrPusher(acr, service) as p:
        pushed = push_image(p, unique_repo, "v1", layers=[300])
    service.grant(PRINCIPAL, unique_repo, ["pull"])  # AcrPull only
    provider = _provider(acr, http, StaticTokenCredential(service.entra_token(PRINCIPAL)))
    # the 'ACR' is the source here; the target is an anonymous registry
    result = _import(http, None, acr.host, unique_repo, "v1", source_registry.host, source_provider=provider,
                     target_repo=f"{unique_repo}/copy")
    assert result.digest == pushed.digest
    with pytest.raises(AuthError, match="not an Entra ID access token"):
        StaticTokenCredential("hunter2").get_token("https://containerregistry.azure.net/.default")


def test_pull_only_identity_cannot_push_until_granted_and_forgotten(acr, source_registry, http, unique_repo):
    service = acr.token_server
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1", layers=[128])
    service.grant(PRINCIPAL, unique_repo, ["pull"])
    provider = _provider(acr, http, StaticCredential(service.entra_token(PRINCIPAL)))
    with pytest.raises(AuthError) as err:
        _import(http, provider, source_registry.host, unique_repo, "v1", acr.host)
    assert acr.host in str(err.value) and err.value.status in (401, 403)
    # AcrPush granted now: ACR puts it only into new tokens; RegistryAuth forgets the refused one on
    # the 401 and asks for a new access token from the same refresh token (no new exchange).
    service.grant(PRINCIPAL, unique_repo, ["pull", "push"])
    exchanges = provider.exchanges
    assert _import(http, provider, source_registry.host, unique_repo, "v1", acr.host).digest == pushed.digest
    assert provider.exchanges == exchanges


# ---- provider rules without a registry ----------------------------------------------------------

class _Never:
    def get_token(self, *scopes, **kw):
        raise AssertionError("the Entra token must not be fetched")


def test_entra_token_only_goes_to_the_registry_itself():
    with httpx.Client() as client:
        provider = AcrTokenProvider(_Never(), registry="myreg.azurecr.io", http=client)
        evil = Challenge("bearer", {"realm": "https://collector.example/oauth2/token", "service": "myreg.azurecr.io"})
        with pytest.raises(AuthError, match="another host"):
            provider(evil, ["repository:a:pull"])
        plain = Challenge("bearer", {"realm": "http://myreg.azurecr.io/oauth2/token", "service": "myreg.azurecr.io"})
        with pytest.raises(AuthError, match="plain-http"):
            provider(plain, ["repository:a:pull"])
        with pytest.raises(AuthError, match="unusable token realm"):
            provider(Challenge("bearer", {"service": "x"}), [])


def test_exchange_answers_are_classified():
    """5xx is a retryable RegistryError, a body without the token an AuthError, a dead host a TransportError."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/exchange":
            return httpx.Response(503, json={"errors": [{"code": "UNAVAILABLE", "message": "try later"}]})
        return httpx.Response(200, json={})

    entra = unsigned_jwt({"tid": "t", "exp": time.time() + 3600})
    challenge = parse_challenges('Bearer realm="https://myreg.azurecr.io/oauth2/token",service="myreg.azurecr.io"')[0]
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        provider = AcrTokenProvider(StaticCredential(entra), registry="myreg.azurecr.io", http=client)
        with pytest.raises(RegistryError) as err:
            provider(challenge, ["repository:a:pull"])
        assert err.value.status == 503 and err.value.retryable and "try later" in str(err.value)

    def no_token(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"nothing": "here"})

    with httpx.Client(transport=httpx.MockTransport(no_token)) as client:
        provider = AcrTokenProvider(StaticCredential(entra), registry="myreg.azurecr.io", http=client)
        with pytest.raises(AuthError, match="without a refresh_token"):
            provider(challenge, ["repository:a:pull"])

    def endless(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"{" + b" " * 65536] * 1000))  # 64 MiB, never buffered

    with httpx.Client(transport=httpx.MockTransport(endless)) as client:
        provider = AcrTokenProvider(StaticCredential(entra), registry="myreg.azurecr.io", http=client)
        with pytest.raises(AuthError, match="too long for a token"):
            provider(challenge, ["repository:a:pull"])

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with httpx.Client(transport=httpx.MockTransport(down)) as client:
        provider = AcrTokenProvider(StaticCredential(entra), registry="myreg.azurecr.io", http=client)
        with pytest.raises(TransportError):
            provider(challenge, ["repository:a:pull"])


def test_jwt_exp_is_read_with_base64url_and_without_padding():
    claims = {"exp": 1893456000, "sub": "??>>??", "pad": "x"}  # '?>' encodes to '/' and '+' in plain base64
    token = unsigned_jwt(claims)
    assert "-" in token.split(".")[1] or "_" in token.split(".")[1]
    assert jwt_expiry(token) == 1893456000.0
    for bad in ("", "abc", "a.b", "a.!!!.c", unsigned_jwt({"exp": "soon"}), unsigned_jwt({"exp": True})):
        assert jwt_expiry(bad) is None


def test_entra_tokens_are_told_from_acr_refresh_tokens(acr):
    assert is_entra_token(acr.token_server.entra_token(PRINCIPAL))  # iss https://sts.windows.net/...
    assert is_entra_token(unsigned_jwt({"iss": "https://login.microsoftonline.com/t/v2.0"}))
    assert not is_entra_token(acr.token_server.issue(PRINCIPAL, []))  # iss "Azure Container Registry"
    assert not is_entra_token("s3cret-password") and not is_entra_token(unsigned_jwt({"iss": "https://sts.evil/"}))


def test_acr_login_server_detection():
    assert is_acr_login_server("myreg.azurecr.io") and is_acr_login_server("MyReg.azurecr.cn:443")
    assert not is_acr_login_server("azurecr.io") and not is_acr_login_server("myreg.azurecr.io.evil.example")
    assert not is_acr_login_server("docker.io")


# ---- identity -----------------------------------------------------------------------------------

def test_identity_modules_import_azure_lazily():
    code = ("import sys, importcore.auth.identity, importcore.auth.acr, importcore.registry.arm, importcore.observe.telemetry;"
            "heavy = ('azure.identity', 'azure.monitor', 'opentelemetry');"
            "print(sorted(m for m in sys.modules if m.startswith(heavy)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_credential_choice_follows_the_client_id_setting():
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = Settings.from_env({"IMPORT_MANAGED_IDENTITY_CLIENT_ID": " 11111111-2222-3333-4444-555555555555 "})
    user_assigned = build_credential(client_id.managed_identity_client_id)
    assert isinstance(user_assigned._inner, ManagedIdentityCredential)
    assert "11111111-2222-3333-4444-555555555555" in repr(user_assigned)
    assert isinstance(build_credential(Settings.from_env({}).managed_identity_client_id)._inner, DefaultAzureCredential)
    assert isinstance(build_credential(None)._inner, DefaultAzureCredential)


def test_credential_failures_become_auth_errors():
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import CredentialUnavailableError

    from importcore.auth.identity import _Checked

    class Failing:
        def __init__(self, exc):
            self.exc = exc

        def get_token(self, *scopes, **kw):
            raise self.exc

    for exc in (ClientAuthenticationError("token request failed\nlong trace"),
                CredentialUnavailableError("no managed identity endpoint")):
        with pytest.raises(AuthError) as err:
            _Checked(Failing(exc), "the test identity").get_token("https://containerregistry.azure.net/.default")
        assert "the test identity" in str(err.value) and "\n" not in str(err.value)


# ---- sources by resource ID (ARM) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def arm():
    with ArmStub() as stub:
        yield stub


def _rid(name: str, group: str = "rg-images") -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/{name}"


def test_source_by_resource_id_resolves_and_imports(acr, arm, target_registry, http, unique_repo):
    service = acr.token_server
    with AcrPusher(acr, service) as p:
        pushed = push_index(p, unique_repo, "v1")
    service.grant(PRINCIPAL, unique_repo, ["pull"])  # AcrPull on the source
    rid = _rid("sourceacr01")
    arm.add_registry(rid, acr.host, readers=(PRINCIPAL,))
    arm_token = unsigned_jwt({"aud": arm.url, "oid": PRINCIPAL, "exp": time.time() + 3600})
    arm.tokens[arm_token] = PRINCIPAL

    class Identity(StaticCredential):
        def get_token(self, *scopes, **kw):
            self.calls.append(scopes)
            token = arm_token if scopes[0].startswith(arm.url) else service.entra_token(PRINCIPAL)
            return AccessToken(token, int(time.time()) + 3600)

    identity = Identity("")
    login = resolve_login_server(rid.upper().replace("SUBSCRIPTIONS", "subscriptions"), identity, http, arm.url)
    assert login == acr.host
    assert identity.calls[0] == (f"{arm.url}/.default",)
    assert arm.requests[-1]["api_version"] == API_VERSION == "2023-07-01"

    provider = AcrTokenProvider(identity, registry=login, http=http, plain_http=True)
    result = _import(http, None, login, unique_repo, "v1", target_registry.host, source_provider=provider)
    assert result.digest == pushed.digest
    with Pusher(target_registry) as t:
        assert t.get_manifest(unique_repo, "v1").headers["docker-content-digest"] == pushed.digest


def test_resource_id_without_read_access_is_a_clear_403(arm, http):
    rid = _rid("lockedacr01")
    arm.add_registry(rid, "lockedacr01.azurecr.io")  # exists, nobody may read it
    token = unsigned_jwt({"oid": "someone", "exp": time.time() + 3600})
    arm.tokens[token] = "someone"
    with pytest.raises(AuthError) as err:
        resolve_login_server(rid, StaticCredential(token), http, arm.url)
    message = str(err.value)
    assert message.startswith(f"the identity lacks Reader/AcrPull on {rid}")
    assert "AuthorizationFailed" in message and err.value.status == 403 and not err.value.retryable
    assert err.value.target == "source.resourceId"


def test_unknown_resource_id_is_not_found(arm, http):
    token = unsigned_jwt({"oid": PRINCIPAL, "exp": time.time() + 3600})
    arm.tokens[token] = PRINCIPAL
    rid = _rid("missingacr01", group="rg-none")
    with pytest.raises(NotFoundError) as err:
        resolve_login_server(rid, StaticCredential(token), http, arm.url, target="--registry")
    assert str(err.value).startswith(f"no container registry {rid}") and "ResourceNotFound" in str(err.value)
    assert err.value.status == 404 and err.value.target == "--registry"


def test_refused_arm_token_is_401(arm, http):
    with pytest.raises(AuthError, match=r"refused the identity's token \(401\) InvalidAuthenticationToken"):
        resolve_login_server(_rid("whatever01"), StaticCredential(unsigned_jwt({"exp": 1})), http, arm.url)


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("myreg.azurecr.io", "must look like"),
    (f"/subscriptions/{SUB}/resourceGroups/rg", "incomplete"),
    ("/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/abcde",
     "is not a GUID"),
    (f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/abcde",
     "names a Microsoft.Storage/storageAccounts resource, not a container registry"),
    (f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/ab",
     "5-50 letters and digits"),
    (f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/my-reg",
     "5-50 letters and digits"),
    (f"/subscriptions/{SUB}/resourceGroups/rg./providers/Microsoft.ContainerRegistry/registries/abcde",
     "resource group"),
    (f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/abcde/webhooks/w",
     "points below a registry"),
    (f"/subscriptions/{SUB}/resourceGroups/r g/providers/Microsoft.ContainerRegistry/registries/abcde",
     "without spaces"),
])
def test_malformed_resource_ids_are_usage_errors(text, why):
    with pytest.raises(UsageError) as err:
        parse_resource_id(text)
    assert why in str(err.value) and err.value.target == "source.resourceId"


def test_resource_id_is_case_insensitive_and_canonical():
    rid = parse_resource_id(f"/SUBSCRIPTIONS/{SUB.upper()}/resourcegroups/RG/PROVIDERS/"
                            "microsoft.containerregistry/REGISTRIES/MyReg01/")
    assert str(rid) == (f"/subscriptions/{SUB}/resourceGroups/RG"
                        "/providers/Microsoft.ContainerRegistry/registries/MyReg01")


def test_arm_endpoint_setting(http):
    assert Settings.from_env({}).arm_endpoint == DEFAULT_ARM_ENDPOINT == "https://management.azure.com"
    assert Settings.from_env({"IMPORT_ARM_ENDPOINT": "https://management.usgovcloudapi.net/"}).arm_endpoint == \
        "https://management.usgovcloudapi.net/"
    with pytest.raises(UsageError, match="must be an https URL"):
        resolve_login_server(_rid("abcde"), StaticCredential("t"), http, "http://management.example")
