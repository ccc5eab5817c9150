"""Scenario 8: an unchanged upstream — a sync of N tags where nothing changed, over scenario 7's WAN.

Ours: `python -m importcore sync --rules FILE --output json`, one rule with a `sync` object that selects
the N tags (docs/sync.md). Skopeo: `skopeo sync --all --preserve-digests --src yaml` with a YAML file
naming the same N tags. The upstream holds N small images (one per tag, each different); the target
was filled once by each tool (untimed), so every timed pass finds nothing new. Both go through the
same delaying proxies (new ones per run, counting), A B A B, with a new connection charged one more
round trip ("as measured") and with connection set-up free. Docker Hub counts manifest GETs against
its pull limit and HEADs not: the proxy in front of the upstream counts both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .content import Image, KiB, push_image
from .counting_proxy import CountingProxy
from .measure import Run, median
from .scenarios import ROOT, Bench, Meter, RegistryServer
from .tools import served_digest
from .wan import _side

__all__ = ["GOAL_RATIO", "scenario8", "sync_run", "unchanged_upstream"]

GOAL_RATIO = 0.3  # wall time, ours/skopeo, connection set-up free
REPO = "bench/sync"


def _tags(n: int) -> list[str]:
    return [f"1.0.{i}" for i in range(n)]


def _rules(path: Path, source: str, target: str) -> Path:
    path.write_text(json.dumps({"version": 1, "rules": [{
        "name": "bench", "registry": source, "repository": REPO, "tags": r"1\.0\.[0-9]+",
        "target": "mirror/{repository}", "targetRegistry": target, "sync": {"schedule": "0 0 */6 * * *"}}]}))
    return path


def _yaml(path: Path, source: str, tags: list[str]) -> Path:
    # JSON is YAML: skopeo's sync file is a map of registry -> images -> tag list.
    path.write_text(json.dumps({source: {"tls-verify": False, "images": {REPO: tags}}}))
    return path


def sync_run(bench: Bench, tool: str, tags: list[str], tgt: RegistryServer, *, rtt: float,
              connect_rtt: float, root: Path = ROOT) -> Run:
    """One pass of `tool` (skopeo, or ours from `root`) through new proxies; checks that it found nothing
    to do."""
    with CountingProxy(bench.source.host, rtt=rtt, connect_rtt=connect_rtt) as sp, \
            CountingProxy(tgt.host, rtt=rtt, connect_rtt=connect_rtt) as tp:
        os.sync()
        with Meter({"source": bench.source, "target": tgt}) as meter:
            if tool == "skopeo":
                run = bench.tools.skopeo_sync(_yaml(bench.work / "sync.yaml", sp.host, tags), f"{tp.host}/skopeo")
            else:
                run = bench.tools.ours_sync(_rules(bench.work / "sync-rules.json", sp.host, tp.host), root=root)
            run.extra.update(meter.stop(run))
        run.extra["proxies"] = {"source": sp.stats(), "target": tp.stats()}
    for side in run.extra["proxies"].values():
        side.pop("timeline", None)
    if tool != "skopeo":
        [report] = json.loads(run.stdout)["rules"]
        if report["unchanged"] != len(tags) or report["planned"] or report["imported"] or report["failed"]:
            raise RuntimeError(f"ours found changes in an unchanged upstream: {run.stdout[:2000]}")
    return run


def _source_cost(runs: list[Run]) -> dict:
    """Requests at the upstream, by kind (medians over the runs)."""
    kinds: dict[str, list[int]] = {}
    for run in runs:
        src = run.extra["proxies"]["source"]["by_kind"]
        for kind in set(src) | set(kinds):
            kinds.setdefault(kind, []).append(src.get(kind, 0))
    by_kind = {kind: median(values) for kind, values in sorted(kinds.items())}
    return {"requests": median([r.extra["proxies"]["source"]["requests"] for r in runs]),
            "manifest_gets": by_kind.get("GET manifest", 0), "manifest_heads": by_kind.get("HEAD manifest", 0),
            "tag_pages": by_kind.get("GET tags", 0), "by_kind": by_kind}


@contextmanager
def unchanged_upstream(bench: Bench, tags: list[str]) -> Iterator[tuple[list[Image], RegistryServer]]:
    """The upstream's N images, and a target each tool has filled once (straight, untimed)."""
    images: list[Image] = [bench.image(f"sync {tag}", lambda tag=tag: push_image(
        bench.pusher, REPO, tag, layers=[KiB], seed=f"scenario8/{tag}")[0]) for tag in tags]
    with bench.registry("target-sync") as tgt:
        bench.tools.ours_sync(_rules(bench.work / "sync-rules.json", bench.source.host, tgt.host))
        bench.tools.skopeo_sync(_yaml(bench.work / "sync.yaml", bench.source.host, tags), f"{tgt.host}/skopeo")
        for image in images:
            # skopeo sync puts a YAML source's images under DEST/<last path component>
            for repo in (f"mirror/{REPO}", f"skopeo/{REPO.rsplit('/', 1)[-1]}"):
                if served_digest(tgt.host, repo, image.tag or "") != image.digest:
                    raise RuntimeError(f"scenario 8: {repo}:{image.tag} was not filled")
        yield images, tgt


def scenario8(bench: Bench) -> dict:
    s = bench.sizes
    rtt = s.rtt_ms / 1000
    tags = _tags(s.s8_tags)
    workload = (f"sync of {len(tags)} unchanged tags (one small image each) over {s.rtt_ms:g} ms; "
                "ours `sync --rules`, skopeo `sync --src yaml`")
    bench.log(f"8. unchanged upstream: {workload}")
    parts = []
    with unchanged_upstream(bench, tags) as (images, tgt):
        for mode, connect_rtt in (("measured", rtt), ("setup-free", 0.0)):
            ours, skopeo = bench._pairs(f"s8 {mode}", images[0], s.pairs, timed=lambda tool, i: sync_run(
                bench, tool, tags, tgt, rtt=rtt, connect_rtt=connect_rtt))
            o, k = _side(ours), _side(skopeo)
            o["source"], k["source"] = _source_cost(ours), _source_cost(skopeo)
            part = {"mode": mode, "connect_rtt_ms": connect_rtt * 1000, "ours": o, "skopeo": k,
                    "ratio": o["median"] / k["median"], "runs": [r.as_dict() for r in ours + skopeo]}
            parts.append(part)
            bench.log(f"   s8 {mode}: ours {o['median']:.3f}s (source: {o['source']['requests']:.0f} requests, "
                      f"{o['source']['manifest_gets']:.0f} manifest GETs, {o['source']['manifest_heads']:.0f} HEADs) "
                      f"skopeo {k['median']:.3f}s (source: {k['source']['requests']:.0f} requests, "
                      f"{k['source']['manifest_gets']:.0f} manifest GETs)  ratio {part['ratio']:.2f}")
    free = parts[-1]
    src = free["ours"]["source"]
    quota_ok = src["manifest_gets"] == 0 and src["manifest_heads"] <= len(tags) \
        and src["requests"] <= len(tags) + src["tag_pages"]
    met = quota_ok and free["ratio"] <= GOAL_RATIO
    return {"id": 8, "name": "unchanged upstream (sync)", "workload": workload, "tags": len(tags), "rtt_ms": s.rtt_ms,
            "parts": parts, "ours": free["ours"], "skopeo": free["skopeo"], "ratio": free["ratio"],
            "target": f"0 manifest GETs, ≤ 1 HEAD per tag + tag-list pages at the source; set-up free ≤ {GOAL_RATIO}× "
                      "skopeo sync's wall time", "met": met,
            "headline": {"ours": f"{free['ours']['median']:.3f} s, {src['manifest_gets']:.0f} manifest GETs, "
                                 f"{src['requests']:.0f} source requests",
                         "skopeo": f"{free['skopeo']['median']:.3f} s, "
                                   f"{free['skopeo']['source']['manifest_gets']:.0f} manifest GETs, "
                                   f"{free['skopeo']['source']['requests']:.0f} source requests"}}
