"""CNCF Distribution (Debian's `docker-registry`, 2.8) started on a free loopback port per test need.

The generated config.yml is JSON (valid YAML), so no YAML library is needed.
"""
from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from .ports import free_port, wait_http
from .tokenserver import TokenServer

REGISTRY_BIN = "docker-registry"


def require_binary(name: str, package: str) -> str:
    """Path of `name`, or a loud failure: missing tools must never turn into skipped tests."""
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found on PATH: install the Debian package '{package}' (make setup)")
    return path


def _deep_merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def htpasswd_line(user: str, password: str) -> str:
    """One bcrypt htpasswd line; Distribution accepts only bcrypt entries."""
    try:
        import bcrypt  # optional: faster and needs no apache2-utils

        return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"
    except ImportError:
        exe = shutil.which("htpasswd")
        if not exe:
            raise RuntimeError("htpasswd registry needs the 'bcrypt' Python module or the Debian "
                               "package 'apache2-utils' (htpasswd)")
        # -C 4: the lowest bcrypt cost keeps every authenticated request fast.
        out = subprocess.run([exe, "-nbB", "-C", "4", user, password], check=True, capture_output=True, text=True)
        return out.stdout.strip()


class RegistryServer:
    """One `docker-registry serve` process with filesystem storage under ``workdir``.

    auth_mode:    "none" | "htpasswd" (``users`` required) | "token" (``token_server`` required;
                  ``users`` is then the token server's users).
    notifications: optional {"url": ..., "headers": {name: value}} endpoint called on push/pull/delete.
    extra_config: dict deep-merged into the generated config last.
    """

    def __init__(self, workdir: Path, auth_mode: str = "none", *, users: dict[str, str] | None = None,
                 token_server: TokenServer | None = None, notifications: dict | None = None,
                 extra_config: dict | None = None):
        if auth_mode not in ("none", "htpasswd", "token"):
            raise ValueError(f"unknown auth_mode {auth_mode!r}")
        if auth_mode == "token" and token_server is None:
            raise ValueError("auth_mode='token' needs token_server")
        if auth_mode == "htpasswd" and not users:
            raise ValueError("auth_mode='htpasswd' needs users")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.auth_mode = auth_mode
        self.token_server = token_server
        self.users = dict(token_server.users if auth_mode == "token" else users or {})
        self.notifications = notifications
        self.extra_config = extra_config or {}
        self.root = self.workdir / "storage"
        self.config_path = self.workdir / "config.yml"
        self.log_path = self.workdir / "registry.log"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_data_path(self, digest: str) -> Path:
        """Where Distribution keeps a blob's bytes, so a test can corrupt or delete it."""
        algo, hexd = digest.split(":", 1)
        return self.root / "docker/registry/v2/blobs" / algo / hexd[:2] / hexd / "data"

    def config(self) -> dict:
        cfg: dict = {
            "version": 0.1,
            "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.root)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": secrets.token_hex(16),
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
            "health": {"storagedriver": {"enabled": False}},
            # 2.8 rejects any manifest with layer `urls` unless allowed (Windows foreign layers need them).
            "validation": {"manifests": {"urls": {"allow": ["^https?://"]}}},
        }
        if self.auth_mode == "htpasswd":
            pw = self.workdir / "htpasswd"
            pw.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in self.users.items()))
            cfg["auth"] = {"htpasswd": {"realm": "test-registry", "path": str(pw)}}
        elif self.auth_mode == "token":
            ts = self.token_server
            cfg["auth"] = {"token": {"realm": ts.realm, "service": ts.service, "issuer": ts.issuer,
                                     "rootcertbundle": str(ts.cert_path)}}
        if self.notifications:
            n = self.notifications
            cfg["notifications"] = {"endpoints": [{
                "name": "test-webhook", "url": n["url"],
                "headers": {k: [v] if isinstance(v, str) else list(v) for k, v in (n.get("headers") or {}).items()},
                "timeout": n.get("timeout", "2s"), "threshold": n.get("threshold", 3),
                "backoff": n.get("backoff", "200ms"),
            }]}
        return _deep_merge(cfg, self.extra_config)

    def start(self, timeout: float = 15.0) -> "RegistryServer":
        exe = require_binary(REGISTRY_BIN, "docker-registry")
        for attempt in range(3):  # a free port can be taken between free_port() and bind
            self.port = free_port()
            self.config_path.write_text(json.dumps(self.config(), indent=2))
            log = open(self.log_path, "ab")
            # Distribution reads REGISTRY_* variables as config overrides; REGISTRY_AUTH_FILE (ours, for
            # the importer) would make it refuse to start, so the registry gets none of them.
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            self.proc = subprocess.Popen([exe, "serve", str(self.config_path)], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env=env)
            log.close()
            try:
                wait_http(f"{self.url}/v2/", timeout, alive=lambda: self.proc.poll() is None)
                return self
            except (RuntimeError, TimeoutError) as e:
                self.stop()
                err = e
                if "address already in use" not in self.log_text():
                    break
        raise RuntimeError(f"docker-registry did not start: {err}\n--- {self.log_path} ---\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"RegistryServer({self.url}, auth={self.auth_mode})"
