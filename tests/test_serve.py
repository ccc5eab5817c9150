"""`python -m importcore serve` started the way a user starts it, as a process: the defaults README.md
documents hold for the host's bindings too, and a start-up that cannot work ends with one `error: …`
line naming what to fix (exit 2: configuration, exit 1: something to start or free first)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.azurite import ACCOUNT, ACCOUNT_KEY
from tests.support.images import Pusher, push_image
from tests.support.ports import free_port, wait_http
from tests.support.skopeo import skopeo_digest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_dir(tmp_path) -> Path:
    """An app directory holding only host.json: no local.settings.json, so only the given env counts."""
    work = tmp_path / "app"
    work.mkdir()
    shutil.copy(ROOT / "host.json", work / "host.json")
    return work


def serve_env(home: Path, **settings: str) -> dict[str, str]:
    """A bare environment: what a shell would have, plus these app settings and nothing else."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PYTHONPATH": str(ROOT),
            "LANG": "C.UTF-8", **settings}


def serve_command(port: int) -> list[str]:
    return [sys.executable, "-m", "importcore", "serve", "--port", str(port)]


def test_serve_needs_only_storage_and_a_target(azurite, source_registry, target_registry, app_dir, unique_repo):
    """No IMPORT_QUEUE, no IMPORT_TIMER_SCHEDULE: the host binds to the documented defaults, and an
    import submitted to /api/imports is taken from that queue and done."""
    with Pusher(source_registry) as p:
        pushed = push_image(p, unique_repo, "v1")
    env = serve_env(app_dir, AzureWebJobsStorage=azurite.connection_string, IMPORT_TARGET_REGISTRY=target_registry.host,
                    # a local http registry on loopback: allowed explicitly, as for any private source
                    IMPORT_PLAIN_HTTP_REGISTRIES="127.0.0.1", IMPORT_ALLOWED_PRIVATE_HOSTS="127.0.0.1")
    port = free_port()
    log = app_dir / "host.log"
    with open(log, "wb") as out:
        host = subprocess.Popen(serve_command(port), cwd=app_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/", timeout=60, ok=(200,), alive=lambda: host.poll() is None)
        for _ in range(300):  # the listing is logged once everything has started
            if "sweep_imports: timerTrigger" in (started := log.read_text()):
                break
            time.sleep(0.1)
        assert "run_import: queueTrigger on 'imports'" in started, started
        assert "poisoned_import: queueTrigger on 'imports-poison'" in started, started
        assert "sweep_imports: timerTrigger '0 */1 * * * *'" in started, started
        body = {"source": {"registryUri": source_registry.host, "sourceImage": f"{unique_repo}:v1"},
                "targetTags": [f"{unique_repo}:v1"]}
        with httpx.Client(base_url=base, timeout=30) as client:
            r = client.post("/api/imports", json=body)
            assert r.status_code == 202, r.text
            job = r.json()
            for _ in range(600):  # up to a minute
                job = client.get(r.headers["location"]).json()
                if job["status"] in ("Succeeded", "Failed"):
                    break
                time.sleep(0.1)
        assert job["status"] == "Succeeded", job
        assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest
    finally:
        host.send_signal(signal.SIGTERM)
        host.wait(timeout=60)
    assert host.returncode == 0
    assert "Traceback" not in log.read_text()


def _closed_port_storage() -> str:
    """A connection string whose endpoints refuse connections (Azurite not running)."""
    port = free_port()
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"QueueEndpoint=http://127.0.0.1:{port}/{ACCOUNT};TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT}")


def _run_to_exit(app_dir: Path, env: dict[str, str], port: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(serve_command(port or free_port()), cwd=app_dir, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def error_line(stderr: str) -> str:
    """The one `error: …` line, and no traceback (log lines before it are the host's ordinary log)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert stderr.rstrip("\n").endswith(errors[0]), stderr
    return errors[0]


STORAGE = "UseDevelopmentStorage=true"  # never reached: each case fails before it would be


START_UP_ERRORS = [  # (case, app settings, host.json, exit code, what the line must name)
    ("no-storage", {"IMPORT_TARGET_REGISTRY": "myacr.azurecr.io"}, None, 2, ["AzureWebJobsStorage"]),
    ("bad-number", {"AzureWebJobsStorage": STORAGE, "IMPORT_MAX_MANIFESTS": "lots"}, None, 2,
     ["IMPORT_MAX_MANIFESTS", "'lots'"]),
    ("bad-schedule", {"AzureWebJobsStorage": STORAGE, "IMPORT_TIMER_SCHEDULE": "every minute"}, None, 2,
     ["IMPORT_TIMER_SCHEDULE", "NCRONTAB"]),
    ("host-json-not-json", {"AzureWebJobsStorage": STORAGE}, '{"version": "2.0",', 2, ["host.json", "line 1"]),
    ("host-json-bad-value", {"AzureWebJobsStorage": STORAGE}, {"extensions": {"queues": {"batchSize": 64}}}, 2,
     ["host.json", "batchSize"]),
    ("host-json-not-an-object", {"AzureWebJobsStorage": STORAGE}, [1], 2, ["host.json", "object"]),
]


@pytest.mark.parametrize(("case", "settings", "host_json", "code", "names"), START_UP_ERRORS,
                         ids=[case[0] for case in START_UP_ERRORS])
def test_a_start_up_that_cannot_work_is_one_error_line(app_dir, case, settings, host_json, code, names):
    if host_json is not None:
        (app_dir / "host.json").write_text(host_json if isinstance(host_json, str) else json.dumps(host_json))
    done = _run_to_exit(app_dir, serve_env(app_dir, **settings))
    assert done.returncode == code, done.stderr
    line = error_line(done.stderr)
    for name in names:
        assert name in line, line


def test_storage_that_cannot_be_reached_is_one_error_line(app_dir):
    storage = _closed_port_storage()
    queue_endpoint = storage.split("QueueEndpoint=", 1)[1].split(";", 1)[0]
    done = _run_to_exit(app_dir, serve_env(app_dir, AzureWebJobsStorage=storage))
    assert done.returncode == 1, done.stderr
    line = error_line(done.stderr)
    assert queue_endpoint.rsplit("/", 1)[0] in line and "AzureWebJobsStorage" in line and "refused" in line, line
    assert ACCOUNT_KEY not in done.stderr and "AccountKey" not in done.stderr


def test_a_port_in_use_is_one_error_line(azurite, app_dir):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _run_to_exit(app_dir, serve_env(app_dir, AzureWebJobsStorage=azurite.connection_string), port)
    assert done.returncode == 1, done.stderr
    line = error_line(done.stderr)
    assert f"127.0.0.1:{port}" in line and "--port" in line, line


def test_unreadable_local_settings_is_one_error_line(app_dir):
    (app_dir / "local.settings.json").write_text('{"Values": {"AzureWebJobsStorage": }')
    done = _run_to_exit(app_dir, serve_env(app_dir))
    assert done.returncode == 2, done.stderr
    assert "local.settings.json" in error_line(done.stderr)
