"""`make demo`: the whole product on local defaults, end to end.

Starts Azurite, a source and a target CNCF Distribution registry and the local functions host
(`python -m importcore serve`), pushes a small multi-arch image to the source, POSTs an import
to /api/imports, polls its status to Succeeded and shows both digests side by side (read with
skopeo, the reference client).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The test harness's launchers are the local stand-ins for Azure Storage and the registries.
from tests.support.azurite import Azurite  # noqa: E402
from tests.support.images import Pusher, push_index  # noqa: E402
from tests.support.ports import free_port, wait_http  # noqa: E402
from tests.support.registries import RegistryServer  # noqa: E402
from tests.support.skopeo import skopeo_digest  # noqa: E402


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="importer-demo-"))
    step("starting Azurite, a source and a target registry")
    with Azurite() as azurite, RegistryServer(work / "source") as source, RegistryServer(work / "target") as target:
        print(f"    source registry  {source.host}\n    target registry  {target.host}\n    azurite queues   "
              f"127.0.0.1:{azurite.queue_port}")
        step("pushing a multi-arch sample image (linux/amd64 + linux/arm64/v8) to the source")
        with Pusher(source) as pusher:
            pushed = push_index(pusher, "samples/hello", "1.0", layers_per_image=2, layer_size=512 * 1024)
        print(f"    {source.host}/samples/hello:1.0 -> {pushed.digest}")

        port = 7071 if _port_free(7071) else free_port()
        env = dict(os.environ, AzureWebJobsStorage=azurite.connection_string, IMPORT_TARGET_REGISTRY=target.host,
                   IMPORT_PLAIN_HTTP_REGISTRIES="127.0.0.1", IMPORT_ALLOWED_PRIVATE_HOSTS="127.0.0.1",
                   IMPORT_QUEUE="imports", IMPORT_JOBS_TABLE="importjobs", IMPORT_TIMER_SCHEDULE="*/30 * * * * *",
                   IMPORT_SYNC_TIMER_SCHEDULE="0 */1 * * * *",
                   IMPORT_CREDENTIAL_KEY=Fernet.generate_key().decode(),
                   REGISTRY_AUTH_FILE=str(work / "auth.json"))
        (work / "auth.json").write_text("{}")
        step(f"starting the local functions host: python -m importcore serve --port {port}")
        host = subprocess.Popen([sys.executable, "-m", "importcore", "serve", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=open(work / "host.log", "w"), stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/admin/host/status", timeout=30, ok=(200,))
            return _import(base, source, target, pushed.digest, work)
        finally:
            host.terminate()
            host.wait(timeout=30)


def _import(base: str, source: RegistryServer, target: RegistryServer, source_digest: str, work: Path) -> int:
    body = {"source": {"registryUri": source.host, "sourceImage": "samples/hello:1.0"},
            "targetTags": ["mirror/hello:1.0"], "mode": "NoForce"}
    step("POST /api/imports")
    print("    " + json.dumps(body))
    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.post("/api/imports", json=body)
        print(f"    {r.status_code} Location: {r.headers.get('location')}")
        if r.status_code != 202:
            print(f"    {r.text}")
            return 1
        location = r.headers["location"]
        step("polling the status")
        deadline, status, job = time.monotonic() + 120, None, {}
        while time.monotonic() < deadline:
            job = client.get(location).json()
            if job["status"] != status:
                status = job["status"]
                print(f"    {status:<9} attempts={job['attempts']} progress={json.dumps(job.get('progress'))}")
            if status in ("Succeeded", "Failed"):
                break
            time.sleep(0.2)
    if job.get("status") != "Succeeded":
        print(f"    import did not succeed: {json.dumps(job.get('error'))}\n    host log: {work / 'host.log'}")
        return 1
    print(f"    result: {json.dumps(job['result'])}")
    step("digests, read back with skopeo inspect --raw")
    src = skopeo_digest(f"{source.host}/samples/hello:1.0")
    dst = skopeo_digest(f"{target.host}/mirror/hello:1.0")
    print(f"    source {source.host}/samples/hello:1.0    {src}")
    print(f"    target {target.host}/mirror/hello:1.0    {dst}")
    same = src == dst == source_digest
    print(f"\n{'identical: the import is byte-for-byte' if same else 'MISMATCH'}")
    return 0 if same else 1


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


if __name__ == "__main__":
    sys.exit(main())
