"""`bench/run.py --smoke`: the benchmark machinery runs end to end on tiny sizes.

`make bench` runs this first (`.venv/bin/python -m pytest -q bench/test_smoke.py`), so a broken
scenario fails in seconds rather than after the full run; `make test` does not collect it (pytest.ini
`testpaths = tests`). No timing is asserted (that is the full run's job, on a quiet machine); only that
every scenario completes, the ratios are printed, and the report, chart and raw results are written.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_bench_smoke_run_completes_and_reports(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=580, stdin=subprocess.DEVNULL,
                          check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"

    for sid in range(1, 6):
        assert f"scenario {sid}: ours " in proc.stdout and "ratio " in proc.stdout, proc.stdout
    assert "imports/min" in proc.stdout, proc.stdout

    results = json.loads((out / "results.json").read_text())
    assert results["smoke"] is True
    assert [s["id"] for s in results["scenarios"]] == [1, 2, 3, 4, 5, 6]
    for scenario in results["scenarios"][:5]:
        assert math.isfinite(scenario["ratio"]) and scenario["ratio"] > 0
        assert scenario["ours"]["rss_mib"] > 0 and scenario["skopeo"]["rss_mib"] > 0
    service = results["scenarios"][5]
    assert service["succeeded"] == service["imports"], service

    report = (out / "BENCHMARKS.md").read_text()
    assert "<!-- bench:begin -->" in report and "| # | scenario |" in report and "benchmarks.png" in report
    assert (out / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
