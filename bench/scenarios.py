"""Scenarios 1–5: our CLI against `skopeo copy --all --preserve-digests`, on the same local registries.

Timed runs alternate A B A B (ours, skopeo). Every timed run copies into a fresh target: a new
Distribution process on a new port with empty storage, started and removed outside the timing.
A new port matters for fairness, not only a new repository: skopeo's blob-info cache remembers
where it pushed each blob (per host:port and repository) and would otherwise *mount* from its
previous run's repository instead of copying. Each run's result is checked (the target serves
the source's digest) before its time is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from .content import GiB, KiB, MiB, Image, new_pusher, push_image, push_multiarch
from .counting_proxy import CountingProxy
from .measure import Run, cpu_seconds, median
from .tools import Tools, served_digest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.registries import RegistryServer  # noqa: E402

__all__ = ["Sizes", "FULL", "SMOKE", "Bench"]


@dataclass(frozen=True)
class Sizes:
    pairs: int = 5
    warmup: bool = True  # one untimed run of each tool first (page cache, .pyc files, binaries)
    s1_platforms: int = 2
    s1_layers: int = 4
    s1_layer: int = 32 * MiB
    s2_layers: int = 100
    s2_layer: int = 64 * KiB
    s4_layers: int = 4
    s4_layer: int = 8 * MiB
    s5_big: int = 2 * GiB
    s5_small: int = 16 * MiB
    s5_big_runs: int = 2  # per tool (A B B A): the peak RSS of a streamed copy hardly varies run to run
    s6_imports: int = 200
    rtt_ms: float = 30.0  # scenarios 7 and 8: the WAN's round trip (and a new connection's extra one)
    s8_tags: int = 50


FULL = Sizes()
SMOKE = Sizes(pairs=1, warmup=False, s1_layers=2, s1_layer=256 * KiB, s2_layers=5, s2_layer=4 * KiB, s4_layers=2,
              s4_layer=64 * KiB, s5_big=8 * MiB, s5_small=1 * MiB, s5_big_runs=1, s6_imports=4, rtt_ms=4.0,
              s8_tags=3)

NOISY = 0.25  # cores used by other processes during a timed run above which its pair is run again
REDO = 3

PLATFORMS = [("linux", "amd64"), ("linux", "arm64"), ("linux", "ppc64le"), ("linux", "s390x")]


def human(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


class Meter:
    """CPU used by the registries and by everything else on the machine while one run lasts."""

    def __init__(self, registries: dict[str, RegistryServer]) -> None:
        self.registries = registries

    def __enter__(self) -> Meter:
        self._reg = {name: cpu_seconds(r.proc.pid if r.proc else None) for name, r in self.registries.items()}
        self._self = sum(psutil.Process().cpu_times()[:2])
        self._busy = busy_cpu()
        return self

    def stop(self, run: Run) -> dict:
        reg = {f"{name}_cpu": cpu_seconds(r.proc.pid if r.proc else None) - self._reg[name]
               for name, r in self.registries.items()}
        own = sum(psutil.Process().cpu_times()[:2]) - self._self
        busy = busy_cpu() - self._busy
        # CPU spent by other processes of the machine meanwhile: a noisy neighbour shows up here.
        background = max(0.0, busy - run.cpu - run.extra.get("launcher_cpu", 0.0) - sum(reg.values()) - own)
        return {**{k: round(v, 3) for k, v in reg.items()}, "background_cpu": round(background, 3)}

    def __exit__(self, *exc) -> None:
        pass


def busy_cpu() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)


def wait_quiet(max_wait: float, *, threshold: float = 0.2, log: Callable[[str], None] = print) -> float:
    """Wait (up to max_wait s) for a second in which other processes use < threshold of one core."""
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        before, t0 = busy_cpu(), time.monotonic()
        time.sleep(1.0)
        load = (busy_cpu() - before) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() > deadline:
            return load
        if not said:
            log(f"   (machine busy: {load:.2f} cores used by other processes; waiting up to {max_wait:.0f}s)")
            said = True


class Bench:
    def __init__(self, work: Path, sizes: Sizes, log: Callable[[str], None] = print, *,
                 quiet_wait: float = 0.0) -> None:
        self.work, self.sizes, self.log, self.quiet_wait = work, sizes, log, quiet_wait
        self.redone = 0  # pairs run again because the machine was busy
        self.tools = Tools(work)
        self.source = RegistryServer(work / "source").start()
        self.pusher = new_pusher(self.source.url)
        self._n = 0
        self._images: dict[str, Image] = {}

    def close(self) -> None:
        self.pusher.close()
        self.source.stop()

    # -- plumbing --------------------------------------------------------------------------

    def image(self, key: str, push: Callable[[], Image]) -> Image:
        """An image pushed to the source once per bench run (scenarios 7-9 reuse 1-3's)."""
        if key not in self._images:
            self._images[key] = push()
        return self._images[key]

    def small_image(self) -> Image:
        s = self.sizes
        return self.image("small", lambda: push_image(self.pusher, "bench/small", "v1", layers=[s.s2_layer] * s.s2_layers,
                                                      seed="scenario2")[0])

    def multiarch_image(self) -> Image:
        s = self.sizes
        return self.image("multiarch", lambda: push_multiarch(
            self.pusher, "bench/multiarch", "v1", platforms=PLATFORMS[:s.s1_platforms],
            layers=[s.s1_layer] * s.s1_layers, seed="scenario1"))

    def noop_image(self) -> Image:
        s = self.sizes
        return self.image("noop", lambda: push_multiarch(
            self.pusher, "bench/noop", "v1", platforms=PLATFORMS[:s.s1_platforms], layers=[s.s2_layer] * s.s1_layers,
            seed="scenario3"))

    @contextmanager
    def registry(self, name: str) -> Iterator[RegistryServer]:
        """A fresh, empty registry on a new port, deleted afterwards."""
        self._n += 1
        path = self.work / f"{name}-{self._n}"
        server = RegistryServer(path)
        try:
            yield server.start()
        finally:
            server.stop()
            shutil.rmtree(path, ignore_errors=True)

    def _timed(self, tool: str, image: Image, i: int, *, source: RegistryServer | None = None,
               target: RegistryServer | None = None, target_repo: str | None = None, root: Path = ROOT) -> Run:
        """One run of `tool` copying `image` into a fresh registry (or `target`), checked, with its meters."""
        source = source or self.source
        with (self.registry("target") if target is None else _given(target)) as tgt:
            repo = target_repo or f"{image.repo}-{tool.lower()}-{i if i >= 0 else 'warmup'}"
            src_ref, dst_image = f"{source.host}/{image.ref}", f"{repo}:{image.tag}"
            registries = {"source": source} if source is tgt else {"source": source, "target": tgt}
            os.sync()  # dirty pages of earlier pushes are written back now, not during the timed run
            with Meter(registries) as meter:
                if tool == "skopeo":
                    run = self.tools.skopeo_copy(src_ref, f"{tgt.host}/{dst_image}")
                else:
                    run = self.tools.ours(src_ref, tgt.host, dst_image, root=root)
                run.extra.update(meter.stop(run))
            served = served_digest(tgt.host, repo, image.tag or image.digest)
            if served != image.digest:
                raise RuntimeError(f"{tool} run {i}: target serves {served}, the source is {image.digest}")
            if tool != "skopeo":
                run.extra["result"] = json.loads(run.stdout)
        return run

    def _pairs(self, label: str, image: Image, pairs: int, *, timed: Callable[[str, int], Run] | None = None,
               tools: tuple[str, str] = ("ours", "skopeo"), **kw) -> tuple[list[Run], list[Run]]:
        """A B A B …: ours then skopeo, `pairs` times, after one untimed warm-up of each.

        `timed(tool, i)` runs one (default: `_timed` with `kw`); `tools` names A and B for it.
        This machine is shared: a pair during which other processes used more than NOISY cores (on
        average, in either run) is run again, at most REDO times, after waiting for a quiet second."""
        timed = timed or (lambda tool, i: self._timed(tool, image, i, **kw))
        first, second = tools
        if self.sizes.warmup:
            timed(first, -1)
            timed(second, -1)
        ours, skopeo = [], []
        for i in range(pairs):
            for attempt in range(REDO + 1):
                if self.quiet_wait:
                    wait_quiet(self.quiet_wait, threshold=NOISY, log=lambda text: None)
                a = timed(first, i)
                b = timed(second, i)
                noise = max(_noise(a), _noise(b))
                if noise <= NOISY or attempt == REDO or not self.quiet_wait:
                    break
                self.redone += 1
                self.log(f"   {label} pair {i + 1}: other processes used {noise:.2f} cores meanwhile; again")
            ours.append(a)
            skopeo.append(b)
            self.log(f"   {label} pair {i + 1}/{pairs}: {first} {a.wall:.3f}s  {second} {b.wall:.3f}s")
        return ours, skopeo

    # -- scenarios -------------------------------------------------------------------------

    def scenario1(self) -> dict:
        s = self.sizes
        workload = f"{s.s1_platforms} platforms × {s.s1_layers} layers × {human(s.s1_layer)} (incompressible)"
        self.log(f"1. large multi-arch: {workload}")
        image = self.multiarch_image()
        ours, skopeo = self._pairs("s1", image, s.pairs)
        return _timing_result(1, "large multi-arch image", workload, image, ours, skopeo, target_ratio=0.8)

    def scenario2(self) -> dict:
        s = self.sizes
        workload = f"1 platform × {s.s2_layers} layers × {human(s.s2_layer)}"
        self.log(f"2. many small layers: {workload}")
        image = self.small_image()
        ours, skopeo = self._pairs("s2", image, s.pairs)
        return _timing_result(2, "many small layers", workload, image, ours, skopeo, target_ratio=0.6)

    def scenario3(self) -> dict:
        """No-op re-import: the target already holds the image and the tag."""
        s = self.sizes
        image = self.noop_image()
        workload = f"re-import of a complete {s.s1_platforms}-platform image ({image.blobs} blobs) into the same tag"
        self.log(f"3. no-op re-import: {workload}")
        with self.registry("target-noop") as tgt:
            self._timed("ours", image, 0, target=tgt, target_repo="mirror/noop")  # fill it once
            ours, skopeo = [], []
            for i in range(s.pairs + (1 if s.warmup else 0)):
                if self.quiet_wait:
                    wait_quiet(self.quiet_wait, threshold=NOISY, log=lambda text: None)
                a = self._timed("ours", image, i, target=tgt, target_repo="mirror/noop")
                b = self._timed("skopeo", image, i, target=tgt, target_repo="mirror/noop")
                if s.warmup and i == 0:
                    continue
                ours.append(a)
                skopeo.append(b)
            counted = {}
            with CountingProxy(self.source.host) as sp, CountingProxy(tgt.host) as tp:
                for tool in ("ours", "skopeo"):
                    sp.reset()
                    tp.reset()
                    src_ref, dst = f"{sp.host}/{image.ref}", f"mirror/noop:{image.tag}"
                    run = (self.tools.ours(src_ref, tp.host, dst) if tool == "ours"
                           else self.tools.skopeo_copy(src_ref, f"{tp.host}/{dst}"))
                    src, dst_stats = sp.stats(), tp.stats()
                    counted[tool] = {"requests": src["requests"] + dst_stats["requests"],
                                     "source": src, "target": dst_stats,
                                     "blob_bytes": src["blob_bytes"] + dst_stats["blob_bytes"],
                                     "json": json.loads(run.stdout) if tool == "ours" else None}
        result = _timing_result(3, "no-op re-import", workload, image, ours, skopeo, target_ratio=None)
        ours_count = counted["ours"]
        json_bytes = ours_count["json"]["bytes"]
        # The source is asked one HEAD (no pull spent); the target is only read: its tag's HEAD, then the
        # walk of what it holds that lets the report count manifests and blobs (README: true counts).
        writes = sum(v for k, v in ours_count["target"]["by_kind"].items() if not k.startswith(("GET", "HEAD")))
        met = ours_count["source"]["by_kind"] == {"HEAD manifest": 1} and writes == 0 \
            and ours_count["blob_bytes"] == 0 and json_bytes == 0
        result.update(counts=counted, target="1 source request (a HEAD), no writes, 0 blob bytes", met=met,
                      headline={"ours": f"{ours_count['requests']} requests, {ours_count['blob_bytes']} B",
                                "skopeo": f"{counted['skopeo']['requests']} requests, "
                                          f"{counted['skopeo']['blob_bytes']} B"})
        self.log(f"   requests: ours {ours_count['requests']} ({ours_count['blob_bytes']} blob bytes), "
                 f"skopeo {counted['skopeo']['requests']} ({counted['skopeo']['blob_bytes']} blob bytes)")
        return result

    def scenario4(self) -> dict:
        """Same registry, another repository: every blob should be mounted, none copied."""
        s = self.sizes
        workload = f"{s.s1_platforms} platforms × {s.s4_layers} layers × {human(s.s4_layer)}, same registry"
        self.log(f"4. same registry, other repository: {workload}")
        with self.registry("shared") as reg:
            with new_pusher(reg.url) as pusher:
                image = push_multiarch(pusher, "bench/base", "v1", platforms=PLATFORMS[:s.s1_platforms],
                                       layers=[s.s4_layer] * s.s4_layers, seed="scenario4")
            ours, skopeo = self._pairs("s4", image, s.pairs, source=reg, target=reg)
            counted = {}
            with CountingProxy(reg.host) as proxy:
                # skopeo twice: its first copy to a registry name it has not seen (cold blob-info cache),
                # then again, when its cache knows where the blobs are (as in the timed runs above).
                for tool in ("ours", "skopeo", "skopeo_warm"):
                    proxy.reset()
                    src_ref, dst = f"{proxy.host}/{image.ref}", f"bench/counted-{tool}:{image.tag}"
                    run = (self.tools.ours(src_ref, proxy.host, dst) if tool == "ours"
                           else self.tools.skopeo_copy(src_ref, f"{proxy.host}/{dst}"))
                    stats = proxy.stats()
                    json_bytes = json.loads(run.stdout)["bytes"] if tool == "ours" else 0
                    counted[tool] = {"requests": stats["requests"], "proxy": stats, "json_bytes": json_bytes,
                                     "blob_bytes": stats["blob_bytes"] + json_bytes}
                    if served_digest(reg.host, f"bench/counted-{tool}", image.tag) != image.digest:
                        raise RuntimeError(f"scenario 4: {tool}'s proxied copy is not the source image")
        result = _timing_result(4, "same registry, other repository", workload, image, ours, skopeo,
                                target_ratio=None)
        timed_bytes = [r.extra["result"]["bytes"] for r in ours]
        ours_bytes = counted["ours"]["blob_bytes"]
        result.update(counts=counted, timed_json_bytes=timed_bytes, target="0 blob bytes (mounts)",
                      met=ours_bytes == 0 and not any(timed_bytes),
                      headline={"ours": f"{ours_bytes} B ({counted['ours']['requests']} requests)",
                                "skopeo": f"{counted['skopeo']['blob_bytes']} B cold cache "
                                          f"({counted['skopeo']['requests']} requests), "
                                          f"{counted['skopeo_warm']['blob_bytes']} B warm "
                                          f"({counted['skopeo_warm']['requests']} requests)"})
        self.log(f"   blob bytes: ours {ours_bytes} ({counted['ours']['requests']} requests), skopeo "
                 f"{counted['skopeo']['blob_bytes']} cold ({counted['skopeo']['requests']} requests), "
                 f"{counted['skopeo_warm']['blob_bytes']} warm ({counted['skopeo_warm']['requests']} requests)")
        return result

    def scenario5(self) -> dict:
        """Peak RSS with one huge layer, and with a small one: streaming keeps it flat."""
        s = self.sizes
        workload = f"1 layer of {human(s.s5_big)} vs 1 layer of {human(s.s5_small)}"
        self.log(f"5. one {human(s.s5_big)} layer (peak RSS): pushing it to the source (streamed)")
        big, _ = push_image(self.pusher, "bench/big", "v1", layers=[s.s5_big], seed="scenario5-big")
        small, _ = push_image(self.pusher, "bench/big16", "v1", layers=[s.s5_small], seed="scenario5-small")
        ours_small, skopeo_small = self._pairs("s5 small", small, s.pairs)
        ours_big, skopeo_big = [], []
        for i in range(s.s5_big_runs):
            # A B, then B A: the first huge copy after the huge push runs slower (page cache), and
            # alternating the order spreads that over both tools.
            order = ("ours", "skopeo") if i % 2 == 0 else ("skopeo", "ours")
            for tool in order:
                if self.quiet_wait:
                    wait_quiet(self.quiet_wait, threshold=NOISY, log=lambda text: None)
                (ours_big if tool == "ours" else skopeo_big).append(self._timed(tool, big, i))
            a, b = ours_big[-1], skopeo_big[-1]
            self.log(f"   s5 {human(s.s5_big)} run {i + 1}/{s.s5_big_runs}: ours {a.wall:.1f}s {a.rss_mib:.1f} MiB  "
                     f"skopeo {b.wall:.1f}s {b.rss_mib:.1f} MiB")
        rss_big = max(r.rss_mib for r in ours_big)
        rss_small = median([r.rss_mib for r in ours_small])
        met = rss_big <= 100 and abs(rss_big - rss_small) <= 10
        return {
            "id": 5, "name": "one huge layer: peak RSS", "workload": workload,
            "target": "peak RSS ≤ 100 MiB, within 10 MiB of the small-layer run", "met": met,
            "ours": _summary(ours_big), "skopeo": _summary(skopeo_big),
            "small": {"ours": _summary(ours_small), "skopeo": _summary(skopeo_small)},
            "ratio": median([r.wall for r in ours_big]) / median([r.wall for r in skopeo_big]),
            "headline": {"ours": f"{rss_big:.1f} MiB ({rss_small:.1f} MiB with {human(s.s5_small)})",
                         "skopeo": f"{max(r.rss_mib for r in skopeo_big):.1f} MiB "
                                   f"({median([r.rss_mib for r in skopeo_small]):.1f} MiB with {human(s.s5_small)})"},
            "runs": [r.as_dict() for r in ours_small + skopeo_small + ours_big + skopeo_big],
            "bytes": big.blob_bytes,
        }


def _noise(run: Run) -> float:
    return run.extra.get("background_cpu", 0.0) / run.wall if run.wall > 0 else 0.0


@contextmanager
def _given(server: RegistryServer) -> Iterator[RegistryServer]:
    yield server


def _summary(runs: list[Run]) -> dict:
    walls = sorted(r.wall for r in runs)
    extra = lambda key: median([r.extra.get(key, 0.0) for r in runs])  # noqa: E731
    return {"n": len(runs), "median": median(walls), "min": walls[0] if walls else None,
            "max": walls[-1] if walls else None, "walls": [round(w, 4) for w in walls],
            "rss_mib": max((r.rss_mib for r in runs), default=0.0), "cpu": median([r.cpu for r in runs]),
            "source_cpu": extra("source_cpu"), "target_cpu": extra("target_cpu"),
            "background_cpu": extra("background_cpu")}


def _timing_result(sid: int, name: str, workload: str, image: Image, ours: list[Run], skopeo: list[Run], *,
                   target_ratio: float | None) -> dict:
    o, k = _summary(ours), _summary(skopeo)
    ratio = o["median"] / k["median"]
    result = {"id": sid, "name": name, "workload": workload, "bytes": image.blob_bytes, "blobs": image.blobs,
              "ours": o, "skopeo": k, "ratio": ratio, "runs": [r.as_dict() for r in ours + skopeo]}
    if target_ratio is not None:
        result.update(target=f"median ≤ {target_ratio}× skopeo's", met=ratio <= target_ratio,
                      headline={"ours": f"{o['median']:.3f} s", "skopeo": f"{k['median']:.3f} s"})
    return result
