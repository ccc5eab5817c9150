"""One frozen settings object, built once from the environment (app settings in Azure).

A shell builds it (function_app.py, the CLI; the local host exports local.settings.json first) and
passes it down: nothing else in importcore reads os.environ.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .arm import parse_registry_names
from .errors import UsageError

__all__ = ["DEFAULT_ARM_ENDPOINT", "DEFAULT_SECRET_HEADER", "SECRET_SETTINGS", "Settings"]

GiB = 1024**3
DEFAULT_TIMER_SCHEDULE = "0 */1 * * * *"  # every minute, on the minute
_TIMESPAN = re.compile(r"(?:\d+\.)?\d+:\d+(?::\d+(?:\.\d+)?)?")
DEFAULT_PUBLIC_REGISTRIES = (
    "docker.io", "mcr.microsoft.com", "ghcr.io", "quay.io", "gcr.io", "registry.k8s.io", "public.ecr.aws",
    "nvcr.io", "registry.gitlab.com",
)
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
DEFAULT_SECRET_HEADER = "X-Webhook-Secret"
# Each event sender's secret (triggers/senders.py checks them and how they are presented).
SECRET_SETTINGS = {
    "github": "IMPORT_WEBHOOK_SECRET_GITHUB",
    "harbor": "IMPORT_WEBHOOK_SECRET_HARBOR",
    "acr": "IMPORT_WEBHOOK_SECRET_ACR",
    "distribution": "IMPORT_WEBHOOK_SECRET_DISTRIBUTION",
    "dockerhub": "IMPORT_WEBHOOK_SECRET_DOCKERHUB",
    "eventgrid": "IMPORT_EVENTGRID_SECRET",
}


def _text(env: Mapping[str, str], name: str) -> str | None:
    """The setting with surrounding blanks removed; unset or blank: None."""
    return (env.get(name) or "").strip() or None


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in (value or "").replace(";", ",").split(",") if item.strip())


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"setting {name}={raw!r} is not an integer") from None
    if value < minimum:
        raise UsageError(f"setting {name}={value} must be at least {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise UsageError(f"setting {name}={raw[:20]!r} is not true or false")


def _auth_file(env: Mapping[str, str]) -> Path:
    # Same search order as podman/skopeo and the docker CLI.
    if env.get("REGISTRY_AUTH_FILE"):
        return Path(env["REGISTRY_AUTH_FILE"])
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def _schedule(env: Mapping[str, str], name: str) -> str:
    # A timer binding's schedule. Only its shape is checked here (the host parses it fully), so a
    # typo names the setting rather than surfacing as a binding error.
    value = (env.get(name) or "").strip()
    if not value:
        return DEFAULT_TIMER_SCHEDULE
    if len(value.split()) not in (5, 6) and not _TIMESPAN.fullmatch(value):
        raise UsageError(f"setting {name}={value[:60]!r} is not an NCRONTAB expression "
                         "('second minute hour day month day-of-week', e.g. '0 */1 * * * *') or a TimeSpan")
    return value


def _deadline_margin(env: Mapping[str, str]) -> int:
    margin = _int(env, "IMPORT_DEADLINE_MARGIN_SECONDS", 60, minimum=0)
    timeout = _int(env, "IMPORT_FUNCTION_TIMEOUT_SECONDS", 600)
    if margin >= timeout:
        raise UsageError(f"setting IMPORT_DEADLINE_MARGIN_SECONDS={margin} must be less than "
                         f"IMPORT_FUNCTION_TIMEOUT_SECONDS={timeout}")
    return margin


_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)


def _verify_keys(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """IMPORT_VERIFY_KEYS: a JSON object naming the public keys requests may refer to (keyRefs):
    {"release": "<PEM>" or "<path of a PEM file>"}. The values are never shown in an error."""
    raw = (env.get("IMPORT_VERIFY_KEYS") or "").strip()
    if not raw:
        return ()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise UsageError("setting IMPORT_VERIFY_KEYS is not a JSON object "
                         '({"name": "<PEM or path of a PEM file>", ...})') from None
    if not isinstance(data, dict):
        raise UsageError("setting IMPORT_VERIFY_KEYS must be a JSON object of key names")
    for name, value in data.items():
        if not _KEY_NAME.fullmatch(name):
            raise UsageError(f"setting IMPORT_VERIFY_KEYS: key name {name[:40]!r} must be 1-64 of letters, digits, "
                             "'.', '_', '-'")
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"setting IMPORT_VERIFY_KEYS: {name!r} must be a PEM public key or a file path")
    return tuple((name, value.strip()) for name, value in data.items())


@dataclass(frozen=True, slots=True)
class Settings:
    storage_connection: str | None = field(default=None, repr=False)  # may hold an account key
    storage_account: str | None = None  # identity-based: AzureWebJobsStorage__accountName (shared keys off)
    target_registry: str | None = None
    plain_http_registries: tuple[str, ...] = ()
    allowed_private_hosts: tuple[str, ...] = ()
    public_registries: tuple[str, ...] = DEFAULT_PUBLIC_REGISTRIES
    auth_file: Path = Path("~/.docker/config.json")
    max_manifests: int = 50
    max_layer_bytes_public: int = 2 * GiB
    blob_concurrency: int = 16
    queue_name: str = "imports"  # function_app.py binds its queue triggers to this and <name>-poison
    jobs_table: str = "importjobs"
    timer_schedule: str = DEFAULT_TIMER_SCHEDULE  # function_app.py binds the sweep timer to this
    sync_timer_schedule: str = DEFAULT_TIMER_SCHEDULE  # ... and the sync timer to this
    credential_key: str | None = field(default=None, repr=False)
    max_attempts: int = 5
    lease_seconds: int = 600
    job_ttl_days: int = 7
    retry_base_seconds: int = 30
    # host.json functionTimeout (10 min); the worker starts no blob transfer in the last margin
    # seconds and re-schedules the job rather than be cut off by the host.
    function_timeout_seconds: int = 600
    deadline_margin_seconds: int = 60
    arm_endpoint: str = DEFAULT_ARM_ENDPOINT
    managed_identity_client_id: str | None = None
    dedupe_window_seconds: int = 600  # 0: every delivery is a new job
    mirror_rules_file: str | None = None  # relative to the working directory (the function app root)
    # sender -> secret, as set: checked (length, header name) where events are taken in, so that a
    # weak one refuses events without stopping imports. repr=False: a settings repr shows no secret.
    webhook_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    webhook_secret_header: str = DEFAULT_SECRET_HEADER
    applicationinsights_connection_string: str | None = field(default=None, repr=False)
    # The ARM route (ImportImage): {registryName} -> login server pairs besides the target's ACR name,
    # the Retry-After its 202s carry, and who may call it (service/armapi.py).
    registry_names: tuple[tuple[str, str], ...] = ()
    arm_retry_after_seconds: int = 10
    arm_allow_anonymous: bool = False  # explicit opt-out of App Service Authentication on the ARM route
    # Set by the platform, not by us: App Service Authentication (Easy Auth) is on for this app; the
    # app runs in App Service/Functions in Azure; it runs under Core Tools or devhost (local, unauthenticated).
    easy_auth_enabled: bool = False
    in_azure: bool = False
    local_host: bool = False
    # A sync pass stops enqueueing imports from a source whose RateLimit-Remaining, less the pulls the
    # pass already planned, would fall under this; the rest waits for the next pass (docs/sync.md).
    sync_min_remaining: int = 10
    verify_keys: tuple[tuple[str, str], ...] = ()  # keyRef name -> PEM or PEM file path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            storage_connection=env.get("AzureWebJobsStorage") or None,
            storage_account=_text(env, "AzureWebJobsStorage__accountName"),
            target_registry=env.get("IMPORT_TARGET_REGISTRY") or None,
            plain_http_registries=_list(env.get("IMPORT_PLAIN_HTTP_REGISTRIES")),
            allowed_private_hosts=_list(env.get("IMPORT_ALLOWED_PRIVATE_HOSTS")),
            public_registries=_list(env.get("IMPORT_PUBLIC_REGISTRIES")) or DEFAULT_PUBLIC_REGISTRIES,
            auth_file=_auth_file(env),
            max_manifests=_int(env, "IMPORT_MAX_MANIFESTS", 50),
            max_layer_bytes_public=_int(env, "IMPORT_MAX_LAYER_BYTES_PUBLIC", 2 * GiB),
            blob_concurrency=_int(env, "IMPORT_BLOB_CONCURRENCY", 16),
            queue_name=env.get("IMPORT_QUEUE") or "imports",
            jobs_table=env.get("IMPORT_JOBS_TABLE") or "importjobs",
            timer_schedule=_schedule(env, "IMPORT_TIMER_SCHEDULE"),
            sync_timer_schedule=_schedule(env, "IMPORT_SYNC_TIMER_SCHEDULE"),
            credential_key=env.get("IMPORT_CREDENTIAL_KEY") or None,
            max_attempts=_int(env, "IMPORT_MAX_ATTEMPTS", 5),
            lease_seconds=_int(env, "IMPORT_LEASE_SECONDS", 600),
            job_ttl_days=_int(env, "IMPORT_JOB_TTL_DAYS", 7),
            retry_base_seconds=_int(env, "IMPORT_RETRY_BASE_SECONDS", 30),
            function_timeout_seconds=_int(env, "IMPORT_FUNCTION_TIMEOUT_SECONDS", 600),
            deadline_margin_seconds=_deadline_margin(env),
            arm_endpoint=_text(env, "IMPORT_ARM_ENDPOINT") or DEFAULT_ARM_ENDPOINT,
            managed_identity_client_id=_text(env, "IMPORT_MANAGED_IDENTITY_CLIENT_ID"),
            dedupe_window_seconds=_int(env, "IMPORT_DEDUPE_WINDOW_SECONDS", 600, minimum=0),
            mirror_rules_file=_text(env, "IMPORT_MIRROR_RULES_FILE"),
            webhook_secrets={sender: secret for sender, name in SECRET_SETTINGS.items()
                             if (secret := _text(env, name)) is not None},
            webhook_secret_header=_text(env, "IMPORT_WEBHOOK_SECRET_HEADER") or DEFAULT_SECRET_HEADER,
            applicationinsights_connection_string=_text(env, "APPLICATIONINSIGHTS_CONNECTION_STRING"),
            registry_names=parse_registry_names(env.get("IMPORT_REGISTRY_NAMES")),
            arm_retry_after_seconds=_int(env, "IMPORT_ARM_RETRY_AFTER_SECONDS", 10),
            arm_allow_anonymous=_bool(env, "IMPORT_ARM_ALLOW_ANONYMOUS"),
            easy_auth_enabled=(_text(env, "WEBSITE_AUTH_ENABLED") or "").lower() == "true",
            in_azure=_text(env, "WEBSITE_SITE_NAME") is not None,
            local_host=(_text(env, "FUNCTIONS_CORETOOLS_ENVIRONMENT") or "").lower() == "true",
            sync_min_remaining=_int(env, "IMPORT_SYNC_MIN_REMAINING", 10, minimum=0),
            verify_keys=_verify_keys(env),
        )
