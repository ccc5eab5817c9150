"""`make bench`: our importer against skopeo on local registries, and the service's throughput.

    .venv/bin/python bench/run.py                 # all six scenarios; rewrites BENCHMARKS.md + bench/benchmarks.png
    .venv/bin/python bench/run.py --only 1,2      # some scenarios (the report then holds only those)
    .venv/bin/python bench/run.py --smoke --out DIR   # tiny sizes, 1 pair: checks the machinery (bench/test_smoke.py)

Everything runs on this machine: the registries (CNCF Distribution), Azurite and the tools are
started on free loopback ports and removed afterwards. Raw figures go to <out>/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.scenarios import FULL, SMOKE, Bench, wait_quiet  # noqa: E402
from bench.service import scenario6  # noqa: E402


def log(text: str) -> None:
    print(text, flush=True)


def machine() -> dict:
    import psutil

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    os_name = platform.platform()
    try:
        fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
        os_name = f"{fields.get('PRETTY_NAME', '').strip(chr(34))}, Linux {platform.release()}"
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": psutil.cpu_count(logical=True),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": os_name, "python": platform.python_version(),
        "skopeo": version(["skopeo", "--version"]), "registry": version(["docker-registry", "--version"]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 pair, no warm-up (make bench, first)")
    parser.add_argument("--only", default="1,2,3,4,5,6", help="comma-separated scenario numbers (default all)")
    parser.add_argument("--pairs", type=int, help="A/B pairs per timed scenario (default 5; smoke 1)")
    parser.add_argument("--out", type=Path, help="where BENCHMARKS.md and the chart go "
                        "(default: the repository root and bench/; with --smoke a temporary directory)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="seconds to wait for other processes to calm down before each scenario "
                             "(default 120; smoke 0)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.pairs:
        sizes = type(sizes)(**{**sizes.__dict__, "pairs": args.pairs})
    only = sorted({int(x) for x in args.only.split(",") if x.strip()})
    quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.smoke else 120.0)
    if args.out is not None:
        md_path, png_path = args.out / "BENCHMARKS.md", args.out / "benchmarks.png"
        json_path = args.out / "results.json"
    elif args.smoke:
        out = Path(tempfile.mkdtemp(prefix="bench-smoke-"))
        md_path, png_path, json_path = out / "BENCHMARKS.md", out / "benchmarks.png", out / "results.json"
    else:
        md_path, png_path, json_path = ROOT / "BENCHMARKS.md", ROOT / "bench" / "benchmarks.png", \
            ROOT / "bench" / "out" / "results.json"
    for path in (md_path, png_path, json_path):
        path.parent.mkdir(parents=True, exist_ok=True)

    info = machine()
    log(f"bench: {'smoke' if args.smoke else 'full'} run, scenarios {only}, {sizes.pairs} pair(s); "
        f"{info['cpu']}, {info['cores']} cores")
    work = Path(tempfile.mkdtemp(prefix="importer-bench-"))
    started = time.monotonic()
    results: list[dict] = []
    bench = Bench(work, sizes, log=log, quiet_wait=min(quiet_wait, 30.0)) if any(s <= 5 for s in only) else None
    try:
        for sid in only:
            if quiet_wait:
                wait_quiet(quiet_wait, log=log)
            t0 = time.monotonic()
            if sid == 6:
                result = scenario6(work, sizes.s6_imports, log=log)
            else:
                result = getattr(bench, f"scenario{sid}")()
            result["seconds"] = round(time.monotonic() - t0, 1)
            results.append(result)
            log(f"   -> {report.one_line(result)}  [{result['seconds']}s]")
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - started
    data = {"machine": info, "smoke": args.smoke, "pairs": sizes.pairs, "sizes": sizes.__dict__,
            "total_seconds": round(total, 1), "redone_pairs": bench.redone if bench else 0, "scenarios": results}
    json_path.write_text(json.dumps(data, indent=2, default=str))
    report.chart(data, png_path)
    report.write_markdown(data, md_path, png_path)
    log("\n" + report.summary_table(data))
    log(f"\nwrote {md_path}, {png_path}, {json_path} in {total:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
