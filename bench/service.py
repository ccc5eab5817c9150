"""Scenario 6: the service's throughput — N small imports POSTed to the local functions host on Azurite.

The stack is `make demo`'s: Azurite (queue + table), a source and a target Distribution registry,
and `python -m importcore serve` (function_app.py with the repository's host.json) as a subprocess.
All N requests are submitted as one burst (4 client threads), then the bench waits for every job to
settle. Times come from the job records themselves (GET /api/imports/{id} once all have settled):
createdAt is written when the POST is accepted, updatedAt when the worker records Succeeded, both by
the host's clock; so the client's polling rate does not blur them.
imports/minute = N ÷ (last Succeeded − first submitted).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from azure.data.tables import TableClient
from cryptography.fernet import Fernet

from .content import KiB, new_pusher, push_image
from .measure import cpu_seconds
from .scenarios import busy_cpu

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.azurite import Azurite  # noqa: E402
from tests.support.ports import free_port, wait_http  # noqa: E402
from tests.support.registries import RegistryServer  # noqa: E402

__all__ = ["scenario6"]

LAYER = 16 * KiB
WARMUP = 2


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def scenario6(work: Path, n: int, log: Callable[[str], None] = print) -> dict:
    workload = f"{n} imports of a 1-layer image ({LAYER // KiB} KiB layer + config), one burst"
    log(f"6. service: {workload}")
    with Azurite() as azurite, RegistryServer(work / "svc-source") as source, \
            RegistryServer(work / "svc-target") as target:
        with new_pusher(source.url) as pusher:
            images = [push_image(pusher, f"apps/app{i:03d}", "v1", layers=[LAYER], seed=f"svc{i}")[0]
                      for i in range(n + WARMUP)]
        auth = work / "svc-auth.json"
        auth.write_text("{}")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IMPORT_", "DOCKER_", "REGISTRY_AUTH"))}
        env.update(AzureWebJobsStorage=azurite.connection_string, IMPORT_TARGET_REGISTRY=target.host,
                   IMPORT_PLAIN_HTTP_REGISTRIES="127.0.0.1", IMPORT_ALLOWED_PRIVATE_HOSTS="127.0.0.1",
                   IMPORT_QUEUE="imports", IMPORT_JOBS_TABLE="importjobs",
                   IMPORT_TIMER_SCHEDULE="0 0 * * * *",  # hourly: the sweeper stays out of the measurement
                   IMPORT_SYNC_TIMER_SCHEDULE="0 0 * * * *",  # no rules with sync here either way
                   IMPORT_CREDENTIAL_KEY=Fernet.generate_key().decode(), REGISTRY_AUTH_FILE=str(auth),
                   HOME=str(work))
        host_log = open(work / "svc-host.log", "wb")
        host = subprocess.Popen([sys.executable, "-m", "importcore", "serve", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=host_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        host_log.close()
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/admin/host/status", timeout=60, ok=(200,), alive=lambda: host.poll() is None)
            with httpx.Client(base_url=base, timeout=60) as client:
                # The warm-up creates the queue and the table, and loads the engine's modules.
                _submit_and_wait(client, azurite.connection_string, source, images[:WARMUP], "warmup")
                procs = {"host": host.pid, "azurite": azurite._proc.pid if azurite._proc else None,
                         "source": source.proc.pid, "target": target.proc.pid}
                cpu0 = {k: cpu_seconds(pid) for k, pid in procs.items()}
                busy0, own0 = busy_cpu(), sum(psutil.Process().cpu_times()[:2])
                wall0 = time.monotonic()
                locations = _submit_and_wait(client, azurite.connection_string, source, images[WARMUP:], "bench")
                wall = time.monotonic() - wall0
                cpu = {k: round(cpu_seconds(pid) - cpu0[k], 2) for k, pid in procs.items()}
                own = sum(psutil.Process().cpu_times()[:2]) - own0
                # Other processes of the machine meanwhile (the host's children are counted in `host`).
                cpu["other"] = round(max(0.0, busy_cpu() - busy0 - sum(cpu.values()) - own), 2)
                # The figures come from the API, read once everything has settled.
                jobs = [client.get(location).json() for location in locations]
        finally:
            host.terminate()
            try:
                host.wait(timeout=30)
            except subprocess.TimeoutExpired:
                host.kill()
                host.wait()
    failed = [j for j in jobs if j["status"] != "Succeeded"]
    latencies = [(_parse(j["updatedAt"]) - _parse(j["createdAt"])).total_seconds() for j in jobs
                 if j["status"] == "Succeeded"]
    first = min(_parse(j["createdAt"]) for j in jobs)
    last = max(_parse(j["updatedAt"]) for j in jobs)
    span = (last - first).total_seconds()
    per_minute = len(latencies) / span * 60 if span > 0 else float("nan")
    p50, p95 = _percentile(latencies, 0.5), _percentile(latencies, 0.95)
    log(f"   {len(latencies)}/{n} succeeded in {span:.1f}s: {per_minute:.0f} imports/minute, "
        f"submit→Succeeded p50 {p50:.2f}s p95 {p95:.2f}s; CPU s: {cpu}")
    return {
        "id": 6, "name": "service throughput", "workload": workload, "target": "≥ 300 imports/minute",
        "met": per_minute >= 300 and not failed,
        "imports": n, "succeeded": len(latencies), "failed": len(failed),
        "errors": [j.get("error") for j in failed][:5],
        "span_s": span, "client_wall_s": wall, "per_minute": per_minute, "p50_s": p50, "p95_s": p95,
        "min_s": min(latencies, default=float("nan")), "max_s": max(latencies, default=float("nan")),
        "cpu_s": cpu,
        "headline": {"ours": f"{per_minute:.0f} imports/min (p50 {p50:.2f} s, p95 {p95:.2f} s)", "skopeo": "—"},
    }


def _submit_and_wait(client: httpx.Client, connection: str, source: RegistryServer, images: list,
                     label: str) -> list[str]:
    """POST one import per image (4 threads) and wait until every job has settled; their Locations."""

    def submit(image) -> str:
        body = {"source": {"registryUri": source.host, "sourceImage": image.ref},
                "targetTags": [f"mirror/{image.repo}:{image.tag}"], "mode": "NoForce"}
        r = client.post("/api/imports", json=body)
        if r.status_code != 202:
            raise RuntimeError(f"POST /api/imports answered {r.status_code}: {r.text[:500]}")
        return r.headers["location"]

    with ThreadPoolExecutor(4) as pool:
        locations = list(pool.map(submit, images))
    ids = {location.rsplit("/", 1)[-1] for location in locations}
    # Wait by querying the job table directly (one cheap Azurite query a second), not through the host:
    # polling 200 jobs over GET /api/imports would spend the very host CPU being measured.
    table = TableClient.from_connection_string(connection, table_name="importjobs")
    deadline = time.monotonic() + 120 + 2 * len(images)
    try:
        while True:
            settled = {e["RowKey"] for e in table.query_entities(
                "PartitionKey eq 'import' and (status eq 'Succeeded' or status eq 'Failed')", select=["RowKey"])}
            left = len(ids - settled)
            if not left:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: {left} of {len(ids)} imports did not settle in time")
            time.sleep(1.0)
    finally:
        table.close()
    return locations
