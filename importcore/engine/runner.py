"""Run one ImportRequest with the settings: build the clients, the policy and the limits."""

from __future__ import annotations

import threading
from dataclasses import replace
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from ..registry.arm import resolve_login_server
from ..auth import Credential, load_credential
from ..auth.acr import AcrTokenProvider, is_acr_login_server, is_entra_token
from ..auth.identity import StaticTokenCredential
from ..auth.identity import app_identity as _identity
from .blobcopy import SessionHook
from .imagecopy import CopyOptions, ImportResult, Progress, connections_for, copy_image
from ..values.errors import HostNotAllowed, ImporterError
from ..net.hostpolicy import HostPolicy
from .plan import Limits
from ..values.errors import UsageError
from ..observe.redact import scrub
from ..values.reference import parse_registry
from ..registry.client import RegistryClient
from .request import ImportRequest
from ..values.settings import Settings
from ..net.transport import make_http_client

if TYPE_CHECKING:  # imported when a request asks for them: they bring `cryptography`
    from .verify import VerifyPolicy

__all__ = ["cancel_sessions", "policy_for", "run_request", "verify_policy"]


def policy_for(settings: Settings, target_registry: str | None) -> HostPolicy:
    trusted = (target_registry,) if target_registry else ()
    return HostPolicy(plain_http=settings.plain_http_registries, allowed_private=settings.allowed_private_hosts,
                      trusted=trusted)


_providers: dict[tuple[str, str | None], AcrTokenProvider] = {}
_providers_lock = threading.Lock()


def token_provider_for(registry: str, credential: Credential | None, settings: Settings,
                       http: httpx.Client) -> AcrTokenProvider | None:
    """ACR by Entra ID: the app's identity when no credential was given (kept per process, so its
    tokens outlive one import), or a password that is an Entra token (az acr import, cross-tenant)."""
    if not is_acr_login_server(registry):
        return None
    if credential is not None:
        if credential.password and is_entra_token(credential.password):  # lives as long as this import
            return AcrTokenProvider(StaticTokenCredential(credential.password), registry=registry, http=http)
        return None
    key = (registry, settings.managed_identity_client_id)
    with _providers_lock:
        if key not in _providers:  # its own client: the import's is closed when the import ends
            _providers[key] = AcrTokenProvider(_identity(settings.managed_identity_client_id), registry=registry,
                                               http=make_http_client(policy_for(settings, registry), max_connections=2))
        return _providers[key]


def run_request(request: ImportRequest, settings: Settings, *, on_progress: Callable[[Progress], None] = lambda p: None,
            on_session: SessionHook = lambda repo, loc: None, http: httpx.Client | None = None,
            deadline: float | None = None) -> ImportResult:
    """Copy request.source into request.target_registry; raises ImporterError on failure.
    `deadline` (time.monotonic()): start no blob transfer after it (copy_image)."""
    policy = policy_for(settings, request.target_registry)
    own = http is None
    http = http or make_http_client(policy, max_connections=connections_for(settings.blob_concurrency))
    secrets: list[str] = list(request.credential.secrets) if request.credential else []
    try:
        if request.source_resource_id:
            login = resolve_login_server(request.source_resource_id, _identity(settings.managed_identity_client_id),
                                         http, settings.arm_endpoint)
            request = replace(request, source=replace(request.source, registry=parse_registry(login)))
        src_registry = request.source.registry
        public = src_registry in settings.public_registries
        limits = Limits(max_manifests=settings.max_manifests,
                        max_layer_bytes=settings.max_layer_bytes_public if public else None)
        referrers = None
        if request.include_referrers:
            from .referrers import ReferrerOptions

            referrers = ReferrerOptions(request.referrer_types)
        options = CopyOptions(force=request.force, platforms=request.platforms, copy_foreign=request.copy_foreign,
                              limits=limits, concurrency=settings.blob_concurrency, referrers=referrers,
                              verify=verify_policy(request, settings) if request.verifies else None)
        if request.target_registry != src_registry:
            try:
                policy.check(src_registry)  # fail fast, before any request
            except HostNotAllowed as exc:
                # The policy speaks of hosts; the user needs to know which side was refused, and that it was.
                raise HostNotAllowed(f"source registry {src_registry} is not allowed: {exc.message}",
                                     target=exc.target) from None
        src_cred = request.credential or load_credential(settings.auth_file, request.credential_ref or src_registry)
        tgt_cred = load_credential(settings.auth_file, request.target_registry)
        secrets += [*(src_cred.secrets if src_cred else ()), *(tgt_cred.secrets if tgt_cred else ())]
        source = RegistryClient(src_registry, http=http, policy=policy, credential=src_cred, role="source",
                                token_provider=token_provider_for(src_registry, src_cred, settings, http))
        target = RegistryClient(request.target_registry, http=http, policy=policy, credential=tgt_cred,
                                role="target",
                                token_provider=token_provider_for(request.target_registry, tgt_cred, settings, http))
        return copy_image(source=source, ref=request.source, target=target, targets=list(request.targets),
                          options=options, on_progress=on_progress, on_session=on_session, deadline=deadline)
    except ImporterError as exc:
        # Error texts quote registries' answers: a hostile one may echo the credentials it was sent.
        exc.message = scrub(exc.message, secrets)
        exc.args = (exc.message,)
        raise
    finally:
        if own:
            http.close()


def verify_policy(request: ImportRequest, settings: Settings) -> VerifyPolicy:
    """The request's keys, and the ones it names from IMPORT_VERIFY_KEYS (a PEM, or the path of one)."""
    from ..values.cosign import PublicKey, load_public_key
    from .verify import VerifyPolicy

    keys: list[PublicKey] = [load_public_key(pem, name=name, target="verify.keys") for name, pem in request.verify_keys]
    held = dict(settings.verify_keys)
    for i, ref in enumerate(request.verify_key_refs):
        if ref not in held:
            raise UsageError(f"verification key {ref!r} is not one the app holds (IMPORT_VERIFY_KEYS names: "
                             f"{', '.join(sorted(held)) or 'none'})", target=f"verify.keyRefs[{i}]")
        keys.append(load_public_key(resolve_key(held[ref], name=ref), name=ref, target=f"verify.keyRefs[{i}]"))
    if not keys:
        raise UsageError("verification needs at least one key", target="verify")
    return VerifyPolicy(tuple(keys))


def resolve_key(value: str, *, name: str) -> str:
    """An IMPORT_VERIFY_KEYS value: the PEM itself (e.g. from a Key Vault reference), or a file path
    (relative to the working directory, the function app root)."""
    if value.lstrip().startswith("-----BEGIN"):
        return value
    try:
        with open(value, encoding="ascii") as f:
            return f.read(64 * 1024)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"IMPORT_VERIFY_KEYS: cannot read the key file of {name!r} "
                         f"({exc.__class__.__name__}: {getattr(exc, 'strerror', None) or 'unreadable'})") from None


def cancel_sessions(settings: Settings, target_registry: str, sessions: list[dict]) -> int:
    """DELETE upload sessions a worker left open (204 and 404 both mean gone); returns how many."""
    if not sessions:
        return 0
    policy = policy_for(settings, target_registry)
    with make_http_client(policy) as http:
        credential = load_credential(settings.auth_file, target_registry)
        target = RegistryClient(target_registry, http=http, policy=policy, credential=credential,
                                token_provider=token_provider_for(target_registry, credential, settings, http))
        for session in sessions:
            target.uploads.cancel(httpx.URL(session["location"]), session["repository"])
    return len(sessions)
