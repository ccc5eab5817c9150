"""Credentials for a registry: given on the command line or found in a docker config.json."""

from __future__ import annotations

import base64
import binascii
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..values.errors import AuthError, UsageError

__all__ = ["Credential", "load_credential"]

_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True, slots=True)
class Credential:
    """username+password (Basic or token endpoint), password alone (an identity/refresh token),
    or a registry token used as-is. repr never shows a secret."""

    username: str | None = None
    password: str | None = None
    registry_token: str | None = None

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, password={'***' if self.password else None})"

    __str__ = __repr__

    @property
    def identity_token(self) -> str | None:
        return self.password if self.password and not self.username else None

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.registry_token) if s)


def _host_of(key: str) -> str:
    key = key.strip().lower()
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.split("/")[0]


def _keys_for(registry: str) -> tuple[str, ...]:
    return _HUB_KEYS if registry == "docker.io" else (registry,)


def load_credential(auth_file: Path, registry: str) -> Credential | None:
    """Look `registry` up in a docker config.json (auths, credHelpers, credsStore)."""
    path = Path(auth_file).expanduser()
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"cannot read registry auth file {path}: {exc.__class__.__name__}") from None
    if not isinstance(config, dict):
        raise UsageError(f"registry auth file {path} is not a JSON object")
    wanted = {_host_of(k) for k in _keys_for(registry)}
    helpers = config.get("credHelpers") or {}
    for key, helper in (helpers.items() if isinstance(helpers, dict) else ()):
        if _host_of(key) in wanted and isinstance(helper, str):
            return _from_helper(helper, key)
    auths = config.get("auths") or {}
    for key, entry in (auths.items() if isinstance(auths, dict) else ()):
        if _host_of(key) in wanted and isinstance(entry, dict):
            cred = _from_entry(entry, path, key)
            if cred:
                return cred
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return _from_helper(store, next(iter(_keys_for(registry))), missing_ok=True)
    return None


def _from_entry(entry: dict, path: Path, key: str) -> Credential | None:
    username, password = entry.get("username"), entry.get("password")
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, ValueError, TypeError):  # ValueError: b64decode of a non-ASCII str
            raise UsageError(f"registry auth file {path}: the 'auth' of {key} is not base64 user:password") from None
    if entry.get("identitytoken"):
        return Credential(username=None, password=entry["identitytoken"])
    if entry.get("registrytoken"):
        return Credential(registry_token=entry["registrytoken"])
    if username or password:
        return Credential(username or None, password or None)
    return None


def _from_helper(helper: str, server: str, *, missing_ok: bool = False) -> Credential | None:
    """Ask `docker-credential-<helper> get` (the docker credential helper protocol)."""
    if not helper.replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"invalid credential helper name {helper!r}")
    try:
        done = subprocess.run([f"docker-credential-{helper}", "get"], input=server.encode(),
                              capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        if missing_ok:
            return None
        raise AuthError(f"credential helper docker-credential-{helper} could not be run") from None
    if done.returncode != 0:
        if missing_ok:
            return None
        raise AuthError(f"credential helper docker-credential-{helper} found no credentials for {server}")
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise AuthError(f"credential helper docker-credential-{helper} answered something that is not JSON") \
            from None
    if not isinstance(data, dict):
        raise AuthError(f"credential helper docker-credential-{helper} answered JSON that is not an object")
    user, secret = data.get("Username"), data.get("Secret")
    if user == "<token>":
        return Credential(password=secret)
    return Credential(user or None, secret or None)
