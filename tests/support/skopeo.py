"""skopeo as the reference client: read back what a registry serves, or copy the way skopeo does.

Refs are 'host:port/repo:tag' or 'host:port/repo@sha256:...' (docker:// is added), or any
skopeo transport ref ('oci:...', 'dir:...', 'docker://...') passed through as is.
"""
from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from .registries import require_binary

_TRANSPORTS = ("docker://", "oci:", "oci-archive:", "dir:", "docker-archive:", "containers-storage:")
_policy_file: Optional[Path] = None


class SkopeoError(RuntimeError):
    def __init__(self, args: Sequence[str], returncode: int, stderr: str):
        super().__init__(f"skopeo {' '.join(args)} exited {returncode}: {stderr.strip()}")
        self.returncode, self.stderr = returncode, stderr


def _ref(ref: str) -> str:
    return ref if ref.startswith(_TRANSPORTS) else "docker://" + ref


def _policy() -> str:
    """Our own accept-anything policy, so a missing or strict /etc/containers/policy.json can't interfere."""
    global _policy_file
    if _policy_file is None:
        _policy_file = Path(tempfile.mkdtemp(prefix="skopeo-policy-")) / "policy.json"
        _policy_file.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
    return str(_policy_file)


def run_skopeo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run skopeo with global flags tests always want; raise SkopeoError with stderr on failure."""
    exe = require_binary("skopeo", "skopeo")
    argv = [exe, "--policy", _policy(), *args]
    p = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise SkopeoError(list(args), p.returncode, p.stderr.decode(errors="replace"))
    return p


def _creds(flag: str, creds) -> list[str]:
    """creds: None (anonymous / auth file), 'user:pass', or (user, pass)."""
    if creds is None:
        return []
    return [flag, creds if isinstance(creds, str) else f"{creds[0]}:{creds[1]}"]


def skopeo_raw(ref: str, *, creds=None) -> bytes:
    """The manifest bytes the registry serves for ref, exactly (`skopeo inspect --raw`)."""
    return run_skopeo("inspect", "--raw", "--tls-verify=false", *_creds("--creds", creds), _ref(ref)).stdout


def skopeo_digest(ref: str, *, creds=None) -> str:
    """'sha256:...' of the served manifest bytes."""
    return "sha256:" + hashlib.sha256(skopeo_raw(ref, creds=creds)).hexdigest()


def skopeo_copy(src: str, dst: str, *, src_creds=None, dest_creds=None, all_images: bool = True,
                extra_args: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """`skopeo copy [--all] --preserve-digests` between plain-http registries (or other transports)."""
    args = ["copy", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false", "--quiet"]
    if all_images:
        args.append("--all")
    args += _creds("--src-creds", src_creds) + _creds("--dest-creds", dest_creds) + list(extra_args)
    return run_skopeo(*args, _ref(src), _ref(dst), timeout=600)
