"""The two tools under test, as command lines: our CLI and `skopeo copy --all --preserve-digests`.

Both run as fresh processes, the way a pipeline runs them, so both pay their start-up (Python's
interpreter and imports for ours, a Go binary's for skopeo). Both speak plain HTTP to the
loopback registries: ours because IMPORT_PLAIN_HTTP_REGISTRIES lists 127.0.0.1, skopeo because of
--src/dest-tls-verify=false (it tries https first, then falls back to http, once per registry).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import httpx

from .measure import Run, run_command

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.images import ALL_MANIFEST_TYPES  # noqa: E402

__all__ = ["Tools"]


class Tools:
    def __init__(self, work: Path) -> None:
        self.python = sys.executable
        self.skopeo = shutil.which("skopeo")
        if not self.skopeo:
            raise RuntimeError("skopeo not found on PATH: install the Debian package 'skopeo' (make setup)")
        home = work / "home"
        home.mkdir(parents=True, exist_ok=True)
        auth = work / "auth.json"
        auth.write_text("{}")
        self.policy = work / "policy.json"
        self.policy.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
        # PYTHONDONTWRITEBYTECODE (set in some sandboxes) would make every run of ours recompile the
        # package (~25 ms): an installed package has its .pyc files, so the warm-up run writes them.
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("IMPORT_", "DOCKER_", "REGISTRY_AUTH", "PYTHONDONTWRITEBYTECODE"))}
        base.update(HOME=str(home), REGISTRY_AUTH_FILE=str(auth))
        self.skopeo_env = dict(base)
        self.ours_env = dict(base, IMPORT_PLAIN_HTTP_REGISTRIES="127.0.0.1", IMPORT_ALLOWED_PRIVATE_HOSTS="127.0.0.1")

    def ours(self, source: str, target_registry: str, image: str, *, extra: tuple[str, ...] = (),
             root: Path = ROOT) -> Run:
        """`python -m importcore import --source SRC --name TARGET --image IMAGE --output json`.

        `root`: the checkout whose importcore runs (bench/ab.py compares two)."""
        argv = [self.python, "-m", "importcore", "import", "--source", source, "--name", target_registry,
                "--image", image, "--output", "json", *extra]
        run = run_command("ours", argv, self.ours_env, cwd=str(root))
        _check(run, argv)
        return run

    def skopeo_copy(self, source: str, dest: str) -> Run:
        """`skopeo copy --all --preserve-digests` between two plain-http registries."""
        argv = [self.skopeo, "--policy", str(self.policy), "copy", "--all", "--preserve-digests",
                "--src-tls-verify=false", "--dest-tls-verify=false", "--quiet", f"docker://{source}",
                f"docker://{dest}"]
        run = run_command("skopeo", argv, self.skopeo_env)
        _check(run, argv)
        return run


    def ours_sync(self, rules: Path, *, root: Path = ROOT) -> Run:
        """`python -m importcore sync --rules FILE --output json` (the target registry is in the rules)."""
        argv = [self.python, "-m", "importcore", "sync", "--rules", str(rules), "--output", "json"]
        run = run_command("ours", argv, self.ours_env, cwd=str(root))
        _check(run, argv)
        return run

    def skopeo_sync(self, yaml: Path, dest: str) -> Run:
        """`skopeo sync --all --preserve-digests --src yaml --dest docker FILE DEST` (plain http)."""
        argv = [self.skopeo, "--policy", str(self.policy), "sync", "--all", "--preserve-digests", "--src", "yaml",
                "--dest", "docker", "--dest-tls-verify=false", str(yaml), dest]
        run = run_command("skopeo", argv, self.skopeo_env)
        _check(run, argv)
        return run


def _check(run: Run, argv: list[str]) -> None:
    if run.rc != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {run.rc}:\n{run.stderr[-3000:]}")


def served_digest(registry: str, repo: str, ref: str) -> str | None:
    """The digest a registry serves for repo:ref (HEAD, every manifest type accepted)."""
    r = httpx.head(f"http://{registry}/v2/{repo}/manifests/{ref}", headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)},
                   timeout=30)
    return r.headers.get("docker-content-digest") if r.status_code == 200 else None
