"""Scenario 7 (over a WAN) and the start-up figure (scenario 9): where users are, not loopback.

Scenario 7 puts a delaying proxy (counting_proxy.CountingProxy with `rtt`) in front of the source
and of each fresh target, the same for both tools, and runs three workloads A B A B: the 100 small
layers of scenario 2, the large multi-arch image of scenario 1, and the no-op re-import of scenario
3. Each workload runs twice: with a new connection charged one more round trip ("as measured"), and
with connection set-up free for both tools (skopeo 1.9 opens a connection per request; newer ones
keep them alive, so the win that counts is the one left without that charge). Every run gets new
proxies, so requests and connections are counted per run.

Scenario 9 is the start-up: the no-op re-import on loopback, A B A B straight to the registries, and
each tool's time from its process start to its first request (through zero-latency counting proxies,
in separate runs so the proxies' own cost stays out of the timed ones).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .content import Image
from .counting_proxy import CountingProxy
from .measure import Run, median, run_command
from .scenarios import ROOT, Bench, Meter, RegistryServer, _given, _summary, human
from .tools import served_digest

__all__ = ["GOALS", "proxied_run", "scenario7", "scenario9", "traffic"]

# Ours/skopeo at the bench's RTT with connection set-up free: the goals scenario 7 is held to.
GOALS = {"small": 0.35, "large": 0.7, "noop": 0.2}
STARTUP_GOAL = 1.5  # no-op re-import on loopback, ours/skopeo wall time


def traffic(run: Run) -> dict:
    """What the proxies saw during one run: requests, connections, requests in flight on average."""
    proxies = run.extra.get("proxies") or {}
    src, tgt = proxies.get("source", {}), proxies.get("target", {})
    firsts = [p["first_request_at"] for p in (src, tgt) if p.get("first_request_at") is not None]
    lasts = [p["last_response_at"] for p in (src, tgt) if p.get("last_response_at") is not None]
    span = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    busy = src.get("request_seconds", 0.0) + tgt.get("request_seconds", 0.0)
    return {"requests": src.get("requests", 0) + tgt.get("requests", 0),
            "source_requests": src.get("requests", 0), "target_requests": tgt.get("requests", 0),
            "connections": src.get("connections", 0) + tgt.get("connections", 0),
            "tls_probes": src.get("tls_probes", 0) + tgt.get("tls_probes", 0),
            "in_flight": busy / span if span > 0 else 0.0,
            "first_request_s": (min(firsts) - run.extra["started"]) if firsts and "started" in run.extra else None,
            "by_kind": {**{f"source {k}": v for k, v in src.get("by_kind", {}).items()},
                        **{f"target {k}": v for k, v in tgt.get("by_kind", {}).items()}}}


def proxied_run(bench: Bench, tool: str, image: Image, i: int, *, rtt: float, connect_rtt: float,
                target: RegistryServer | None = None, target_repo: str | None = None, root: Path = ROOT,
                timeline: list | None = None) -> Run:
    """One run of `tool` (ours, skopeo; or A/B: ours from `root`) through new proxies, checked.

    `timeline`: a list that receives (start, end, "source|target kind") per request, relative to
    the process start."""
    with (bench.registry("target") if target is None else _given(target)) as tgt:
        repo = target_repo or f"{image.repo}-{tool.lower()}-{i if i >= 0 else 'warmup'}"
        with CountingProxy(bench.source.host, rtt=rtt, connect_rtt=connect_rtt) as sp, \
                CountingProxy(tgt.host, rtt=rtt, connect_rtt=connect_rtt) as tp:
            src_ref, dst_image = f"{sp.host}/{image.ref}", f"{repo}:{image.tag}"
            os.sync()
            with Meter({"source": bench.source, "target": tgt}) as meter:
                if tool == "skopeo":
                    run = bench.tools.skopeo_copy(src_ref, f"{tp.host}/{dst_image}")
                else:
                    run = bench.tools.ours(src_ref, tp.host, dst_image, root=root)
                run.extra.update(meter.stop(run))
            stats = {"source": sp.stats(), "target": tp.stats()}
            if timeline is not None:
                timeline.extend(sorted((a - run.extra["started"], b - run.extra["started"], f"{side} {kind}")
                                       for side, st in stats.items() for a, b, kind in st["timeline"]))
            run.extra["proxies"] = {side: {k: v for k, v in st.items() if k != "timeline"} for side, st in stats.items()}
        served = served_digest(tgt.host, repo, image.tag or image.digest)
        if served != image.digest:
            raise RuntimeError(f"{tool} run {i}: target serves {served}, the source is {image.digest}")
        if tool != "skopeo":
            run.extra["result"] = json.loads(run.stdout)
    return run


def _side(runs: list[Run]) -> dict:
    counted = [traffic(r) for r in runs]
    out = _summary(runs)
    for key in ("requests", "source_requests", "target_requests", "connections", "tls_probes", "in_flight"):
        out[key] = median([c[key] for c in counted])
    # The request mix of the run whose wall time is the median (they hardly differ run to run).
    middle = sorted(range(len(runs)), key=lambda k: runs[k].wall)[len(runs) // 2] if runs else None
    out["by_kind"] = counted[middle]["by_kind"] if middle is not None else {}
    return out


@contextmanager
def _noop_target(bench: Bench, image: Image) -> Iterator[RegistryServer]:
    """A target already holding `image` at mirror/noop (filled once, straight, outside any timing)."""
    with bench.registry("target-noop") as tgt:
        bench._timed("ours", image, 0, target=tgt, target_repo="mirror/noop")
        yield tgt


def scenario7(bench: Bench) -> dict:
    s = bench.sizes
    rtt = s.rtt_ms / 1000
    small, large, noop = bench.small_image(), bench.multiarch_image(), bench.noop_image()
    workloads = [
        ("small", f"{s.s2_layers} layers × {human(s.s2_layer)}", small),
        ("large", f"{s.s1_platforms} platforms × {s.s1_layers} layers × {human(s.s1_layer)}", large),
        ("noop", f"no-op re-import ({noop.blobs} blobs present)", noop),
    ]
    bench.log(f"7. over a WAN: {s.rtt_ms:g} ms round trip per request (+{s.rtt_ms:g} ms per new connection, "
              "then set-up free)")
    parts = []
    for key, workload, image in workloads:
        for mode, connect_rtt in (("measured", rtt), ("setup-free", 0.0)):
            label = f"s7 {key} {mode}"
            if key == "noop":
                with _noop_target(bench, image) as tgt:
                    ours, skopeo = bench._pairs(label, image, s.pairs, timed=lambda tool, i: proxied_run(
                        bench, tool, image, i, rtt=rtt, connect_rtt=connect_rtt, target=tgt,
                        target_repo="mirror/noop"))
            else:
                ours, skopeo = bench._pairs(label, image, s.pairs, timed=lambda tool, i: proxied_run(
                    bench, tool, image, i, rtt=rtt, connect_rtt=connect_rtt))
            o, k = _side(ours), _side(skopeo)
            part = {"key": key, "workload": workload, "mode": mode, "connect_rtt_ms": connect_rtt * 1000,
                    "ours": o, "skopeo": k, "ratio": o["median"] / k["median"],
                    "runs": [r.as_dict() for r in ours + skopeo]}
            if mode == "setup-free":
                part.update(goal=GOALS[key], met=part["ratio"] <= GOALS[key])
            parts.append(part)
            bench.log(f"   {label}: ours {o['median']:.3f}s ({o['requests']:.0f} requests, {o['connections']:.0f} "
                      f"connections, {o['in_flight']:.1f} in flight)  skopeo {k['median']:.3f}s "
                      f"({k['requests']:.0f} requests, {k['connections']:.0f} connections, {k['in_flight']:.1f} in "
                      f"flight)  ratio {part['ratio']:.2f}")
    free = {p["key"]: p for p in parts if p["mode"] == "setup-free"}
    return {"id": 7, "name": "over a WAN", "rtt_ms": s.rtt_ms,
            "workload": f"{s.rtt_ms:g} ms round trip per request (+{s.rtt_ms:g} ms per new connection, or set-up "
                        "free): small layers, large multi-arch, no-op",
            "parts": parts, "met": all(p["met"] for p in free.values()),
            "target": "set-up free: " + ", ".join(f"{k} ≤ {g}×" for k, g in GOALS.items()),
            "ratio": free["small"]["ratio"], "ours": free["small"]["ours"], "skopeo": free["small"]["skopeo"]}


# What any Python CLI built on httpx pays before its first request: the interpreter, then the imports
# of the libraries ours needs on a no-op path (httpx with httpcore and h11, argparse, logging, json, the
# thread pool). Timed like the tools, in the same rounds: the floor that start-up work cannot go below.
FLOOR = {"interpreter": "pass",
         "dependencies": "import httpx, httpcore, h11, argparse, logging, json, concurrent.futures.thread"}


def scenario9(bench: Bench) -> dict:
    """Start-up: the no-op re-import on loopback, the time to each tool's first request, and the floor."""
    s = bench.sizes
    image = bench.noop_image()
    workload = f"no-op re-import on loopback ({image.blobs} blobs present); time to the first request"
    bench.log(f"9. start-up: {workload}")
    floor: dict[str, list[Run]] = {name: [] for name in FLOOR}
    with _noop_target(bench, image) as tgt:
        def timed(tool: str, i: int) -> Run:
            run = bench._timed(tool, image, i, target=tgt, target_repo="mirror/noop")
            if tool == "skopeo":  # the floor in the same round, after the pair's second run
                for name, code in FLOOR.items():
                    part = run_command(name, [bench.tools.python, "-c", code], bench.tools.ours_env, cwd=str(ROOT))
                    if i >= 0:
                        floor[name].append(part)
            return run

        ours, skopeo = bench._pairs("s9", image, s.pairs, timed=timed)
        first: dict[str, list[float]] = {"ours": [], "skopeo": []}
        for i in range(s.pairs):
            for tool in ("ours", "skopeo"):
                run = proxied_run(bench, tool, image, i, rtt=0.0, connect_rtt=0.0, target=tgt,
                                  target_repo="mirror/noop")
                first[tool].append(traffic(run)["first_request_s"])
    o, k = _summary(ours), _summary(skopeo)
    ratio = o["median"] / k["median"]
    to_first = {tool: median(values) for tool, values in first.items()}
    floors = {name: median([r.wall for r in runs]) for name, runs in floor.items()}
    bench.log(f"   first request after: ours {to_first['ours'] * 1000:.0f} ms, skopeo {to_first['skopeo'] * 1000:.0f} ms; "
              f"floor: interpreter {floors['interpreter'] * 1000:.0f} ms, with the dependencies' imports "
              f"{floors['dependencies'] * 1000:.0f} ms = {floors['dependencies'] / k['median']:.2f}× skopeo's no-op")
    return {"id": 9, "name": "start-up", "workload": workload, "bytes": 0, "blobs": image.blobs,
            "ours": o, "skopeo": k, "ratio": ratio, "first_request_s": to_first, "first_request_runs": first,
            "floor_s": floors, "floor_ratio": floors["dependencies"] / k["median"],
            "target": f"no-op wall time ≤ {STARTUP_GOAL}× skopeo's", "met": ratio <= STARTUP_GOAL,
            "headline": {"ours": f"{o['median']:.3f} s, first request at {to_first['ours'] * 1000:.0f} ms",
                         "skopeo": f"{k['median']:.3f} s, first request at {to_first['skopeo'] * 1000:.0f} ms"},
            "runs": [r.as_dict() for r in ours + skopeo]}
