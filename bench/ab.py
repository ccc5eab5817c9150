"""A/B two checkouts of importcore (or one against skopeo) on one workload, A B A B, fresh target each run.

    .venv/bin/python bench/ab.py --a /work/main --b . --workload small --rtt 30
    .venv/bin/python bench/ab.py --a . --b skopeo --workload noop --rtt 0
    .venv/bin/python bench/ab.py --a . --b .@IMPORT_BLOB_CONCURRENCY=32 --workload small   # a setting

Both sides run through the same proxies (scenario 7's WAN when --rtt > 0; counting only at 0), and copy
from the same source registry. For deciding a change, not for BENCHMARKS.md: prints medians of wall
and CPU time, requests, connections and requests in flight.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.measure import median  # noqa: E402
from bench.scenarios import FULL, SMOKE, Bench  # noqa: E402
from bench.syncbench import sync_run, unchanged_upstream  # noqa: E402
from bench.wan import _noop_target, proxied_run, traffic  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="checkout (a directory holding importcore/) or 'skopeo'; "
                        "CHECKOUT@VAR=VALUE,... runs it with those settings")
    parser.add_argument("--b", required=True, help="checkout or 'skopeo', as --a")
    parser.add_argument("--workload", choices=("small", "large", "noop", "sync"), default="small",
                        help="scenario 7's three, or scenario 8's unchanged sync (--tags of them)")
    parser.add_argument("--tags", type=int, default=50, help="sync: tags in the upstream")
    parser.add_argument("--rtt", type=float, default=30.0, help="round trip per request, ms (0: loopback)")
    parser.add_argument("--connect-rtt", type=float, default=0.0, help="extra per new connection, ms")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--direct", action="store_true", help="no proxies: straight to the registries on loopback "
                        "(scenarios 1-3); wall and CPU only")
    parser.add_argument("--smoke", action="store_true", help="smoke sizes")
    parser.add_argument("--timeline", action="store_true", help="print each side's last run, request by request")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    work = Path(tempfile.mkdtemp(prefix="importer-ab-"))
    bench = Bench(work, sizes, log=print)
    sides = {"A": args.a.partition("@")[0], "B": args.b.partition("@")[0]}
    settings = {side: dict(kv.split("=", 1) for kv in spec.partition("@")[2].split(",") if kv)
                for side, spec in (("A", args.a), ("B", args.b))}
    base_env = dict(bench.tools.ours_env)
    try:
        rtt, connect = args.rtt / 1000, args.connect_rtt / 1000
        if args.workload == "sync":
            tags = [f"1.0.{i}" for i in range(args.tags)]
            with unchanged_upstream(bench, tags) as (images, tgt):
                a, b = bench._pairs("ab", images[0], args.pairs, tools=("A", "B"), timed=lambda side, i: sync_run(
                    bench, "skopeo" if sides[side] == "skopeo" else side, tags, tgt, rtt=rtt, connect_rtt=connect,
                    root=ROOT if sides[side] == "skopeo" else Path(sides[side]).resolve()))
            _report(sides, a, b)
            return 0
        image = {"small": bench.small_image, "large": bench.multiarch_image, "noop": bench.noop_image}[args.workload]()
        timelines: dict[str, list] = {}

        def timed(side: str, i: int, **kw):
            bench.tools.ours_env = {**base_env, **settings[side]}
            where = sides[side]
            tool = "skopeo" if where == "skopeo" else side
            root = ROOT if where == "skopeo" else Path(where).resolve()
            if args.direct:
                return bench._timed(tool, image, i, root=root, **kw)
            timelines[side] = []
            return proxied_run(bench, tool, image, i, rtt=rtt, connect_rtt=connect, root=root,
                               timeline=timelines[side], **kw)

        if args.workload == "noop":
            with _noop_target(bench, image) as tgt:
                a, b = bench._pairs("ab", image, args.pairs, tools=("A", "B"), timed=lambda side, i: timed(
                    side, i, target=tgt, target_repo="mirror/noop"))
        else:
            a, b = bench._pairs("ab", image, args.pairs, tools=("A", "B"), timed=timed)
        _report(sides, a, b)
        if args.timeline:
            for side, rows in timelines.items():
                print(f"--- {side}: request timeline of its last run (ms from process start)")
                for start, end, kind in rows:
                    print(f"{start * 1000:8.1f} {end * 1000:8.1f}  {kind}")
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _report(sides: dict[str, str], a: list, b: list) -> None:
    for side, runs in (("A", a), ("B", b)):
        counted = [traffic(r) for r in runs]
        print(f"{side} ({sides[side]}): wall {median([r.wall for r in runs]):.3f} s "
              f"[{', '.join(f'{r.wall:.3f}' for r in sorted(runs, key=lambda r: r.wall))}]; "
              f"CPU {median([r.cpu for r in runs]):.3f} s; requests {median([c['requests'] for c in counted]):.0f} "
              f"(source {median([c['source_requests'] for c in counted]):.0f}); "
              f"connections {median([c['connections'] for c in counted]):.0f}; in flight "
              f"{median([c['in_flight'] for c in counted]):.1f}; first request "
              f"{median([c['first_request_s'] or 0 for c in counted]) * 1000:.0f} ms")
    print(f"B/A {median([r.wall for r in b]) / median([r.wall for r in a]):.3f}")


if __name__ == "__main__":
    sys.exit(main())
