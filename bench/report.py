"""Turn bench results into the console summary, BENCHMARKS.md (between markers) and a PNG chart."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["chart", "one_line", "summary_table", "write_markdown"]

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _ok(result: dict) -> str:
    if "met" not in result:
        return ""
    return "met" if result["met"] else "MISSED"


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def _part_label(part: dict) -> str:
    return {"small": "small layers", "large": "large multi-arch", "noop": "no-op"}.get(part["key"], part["key"])


def one_line(result: dict) -> str:
    """One console line per scenario."""
    sid = result["id"]
    if sid == 7:
        free = [p for p in result["parts"] if p["mode"] == "setup-free"]
        measured = {p["key"]: p for p in result["parts"] if p["mode"] == "measured"}
        return f"scenario 7 ({result['rtt_ms']:g} ms): " + "; ".join(
            f"{_part_label(p)} {p['ratio']:.2f} set-up free (≤ {p['goal']}: {'met' if p['met'] else 'MISSED'}), "
            f"{measured[p['key']]['ratio']:.2f} as measured" for p in free)
    if sid == 6:
        return (f"scenario 6: {result['per_minute']:.0f} imports/min, p50 {result['p50_s']:.2f}s, "
                f"p95 {result['p95_s']:.2f}s ({result['succeeded']}/{result['imports']} succeeded) "
                f"target {result['target']}: {_ok(result)}")
    o, k = result["ours"], result["skopeo"]
    text = (f"scenario {sid}: ours {_s(o['median'])} vs skopeo {_s(k['median'])}, ratio {result['ratio']:.2f}, "
            f"peak RSS {o['rss_mib']:.1f} vs {k['rss_mib']:.1f} MiB")
    if "headline" in result and sid in (3, 4, 5, 8, 9):
        text += f"; ours {result['headline']['ours']}, skopeo {result['headline']['skopeo']}"
    if "target" in result:
        text += f"; target {result['target']}: {_ok(result)}"
    return text


def _rows(data: dict) -> list[list[str]]:
    rows = []
    for r in data["scenarios"]:
        if r["id"] == 6:
            rows.append([str(r["id"]), r["name"], r["workload"], "—", "—", "—", "—", r["headline"]["ours"],
                         r["target"], _ok(r)])
            continue
        if r["id"] == 7:
            measured = {p["key"]: p for p in r["parts"] if p["mode"] == "measured"}
            for p in r["parts"]:
                if p["mode"] != "setup-free":
                    continue
                o, k, m = p["ours"], p["skopeo"], measured[p["key"]]
                rows.append([
                    "7", f"WAN {r['rtt_ms']:g} ms: {_part_label(p)}", p["workload"], _s(o["median"]), _s(k["median"]),
                    f"{p['ratio']:.2f}", f"{o['rss_mib']:.0f} / {k['rss_mib']:.0f} MiB",
                    f"set-up free {p['ratio']:.2f} (requests {o['requests']:.0f} / {k['requests']:.0f}, connections "
                    f"{o['connections']:.0f} / {k['connections']:.0f}); as measured {m['ratio']:.2f} "
                    f"({_s(m['ours']['median'])} vs {_s(m['skopeo']['median'])}, connections "
                    f"{m['ours']['connections']:.0f} / {m['skopeo']['connections']:.0f})",
                    f"set-up free ≤ {p['goal']}× skopeo's", "met" if p["met"] else "MISSED"])
            continue
        o, k = r["ours"], r["skopeo"]
        key = {3: "requests, blob bytes", 4: "blob bytes transferred", 5: "peak RSS",
               8: "set-up free: wall, source manifest GETs and requests", 9: "wall time, first request"}.get(r["id"])
        measured = f"{key}: ours {r['headline']['ours']}; skopeo {r['headline']['skopeo']}" if key else \
            f"ours/skopeo {r['ratio']:.2f}"
        rows.append([str(r["id"]), r["name"], r["workload"], _s(o["median"]), _s(k["median"]), f"{r['ratio']:.2f}",
                     f"{o['rss_mib']:.0f} / {k['rss_mib']:.0f} MiB", measured, r.get("target", "—"), _ok(r)])
    return rows


HEAD = ["#", "scenario", "workload", "ours (median)", "skopeo (median)", "ours/skopeo", "peak RSS ours / skopeo",
        "measured", "target", ""]


def summary_table(data: dict) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(data)]
    return "\n".join(lines)


def _wan_details(r: dict) -> list[str]:
    out = ["| workload | connection set-up | ours (median) | skopeo (median) | ours/skopeo | requests ours / skopeo "
           "| connections ours / skopeo | in flight ours / skopeo | goal |", "|---|---|---|---|---|---|---|---|---|"]
    for p in r["parts"]:
        o, k = p["ours"], p["skopeo"]
        setup = f"+{p['connect_rtt_ms']:g} ms per connection" if p["mode"] == "measured" else "free"
        goal = f"≤ {p['goal']}: {'met' if p['met'] else 'MISSED'}" if "goal" in p else "—"
        out.append(f"| {_part_label(p)}: {p['workload']} | {setup} | {_s(o['median'])} | {_s(k['median'])} | "
                   f"{p['ratio']:.2f} | {o['requests']:.0f} / {k['requests']:.0f} | {o['connections']:.0f} / "
                   f"{k['connections']:.0f} | {o['in_flight']:.1f} / {k['in_flight']:.1f} | {goal} |")
    out.append("")
    for p in r["parts"]:
        for tool in ("ours", "skopeo"):
            s = p[tool]
            walls = ", ".join(f"{w:.3f}" for w in s["walls"])
            kinds = ", ".join(f"{k} ×{v}" for k, v in s["by_kind"].items())
            probes = f", {s['tls_probes']:.0f} https probes" if s.get("tls_probes") else ""
            out.append(f"- {_part_label(p)}, set-up {'charged' if p['mode'] == 'measured' else 'free'}, {tool}: "
                       f"runs {walls}; CPU {s['cpu']:.2f} s; {s['requests']:.0f} requests on "
                       f"{s['connections']:.0f} connections{probes} — {kinds}")
    out.append("")
    return out


def _sync_details(r: dict) -> list[str]:
    out = ["| connection set-up | ours (median) | skopeo (median) | ours/skopeo | at the source, ours: requests, "
           "manifest GETs, HEADs, tag-list pages | at the source, skopeo: requests, manifest GETs | connections "
           "ours / skopeo |", "|---|---|---|---|---|---|---|"]
    for p in r["parts"]:
        o, k = p["ours"], p["skopeo"]
        setup = f"+{p['connect_rtt_ms']:g} ms per connection" if p["mode"] == "measured" else "free"
        os_, ks = o["source"], k["source"]
        out.append(f"| {setup} | {_s(o['median'])} | {_s(k['median'])} | {p['ratio']:.2f} | {os_['requests']:.0f}, "
                   f"{os_['manifest_gets']:.0f}, {os_['manifest_heads']:.0f}, {os_['tag_pages']:.0f} | "
                   f"{ks['requests']:.0f}, {ks['manifest_gets']:.0f} | {o['connections']:.0f} / {k['connections']:.0f} |")
    out.append("")
    for p in r["parts"]:
        for tool in ("ours", "skopeo"):
            side = p[tool]
            walls = ", ".join(f"{w:.3f}" for w in side["walls"])
            kinds = ", ".join(f"{k} ×{v:g}" for k, v in side["by_kind"].items())
            out.append(f"- set-up {'charged' if p['mode'] == 'measured' else 'free'}, {tool}: runs {walls}; CPU "
                       f"{side['cpu']:.2f} s; peak RSS {side['rss_mib']:.1f} MiB — {kinds}")
    out.append("")
    return out


def _details(r: dict) -> list[str]:
    out = [f"### {r['id']}. {r['name']} — {r['workload']}", ""]
    if r["id"] == 7:
        return out + _wan_details(r)
    if r["id"] == 8:
        return out + _sync_details(r)
    if r["id"] == 6:
        cpu = ", ".join(f"{k} {v:.1f} s" for k, v in r["cpu_s"].items())
        out += [f"- {r['succeeded']}/{r['imports']} succeeded ({r['failed']} failed) in {r['span_s']:.1f} s "
                f"from the first submit to the last Succeeded: **{r['per_minute']:.0f} imports/minute**",
                f"- submit → Succeeded: p50 {r['p50_s']:.2f} s, p95 {r['p95_s']:.2f} s, min {r['min_s']:.2f} s, "
                f"max {r['max_s']:.2f} s (a burst: later jobs include their wait in the queue)",
                f"- CPU used during the burst: {cpu}", ""]
        if r.get("errors"):
            out += [f"- first errors: `{r['errors']}`", ""]
        return out
    for tool in ("ours", "skopeo"):
        s = r[tool]
        walls = ", ".join(f"{w:.3f}" for w in s["walls"])
        out.append(f"- {tool}: median {_s(s['median'])} (runs: {walls}); CPU {s['cpu']:.2f} s; peak RSS "
                   f"{s['rss_mib']:.1f} MiB; registries' CPU: source {s['source_cpu']:.2f} s, target "
                   f"{s['target_cpu']:.2f} s; other processes {s['background_cpu']:.2f} s")
    if r["id"] == 3:
        for tool in ("ours", "skopeo"):
            c = r["counts"][tool]
            kinds = {**{f"source {k}": v for k, v in c["source"]["by_kind"].items()},
                     **{f"target {k}": v for k, v in c["target"]["by_kind"].items()}}
            out.append(f"- {tool} through the counting proxies: {c['requests']} requests, {c['blob_bytes']} blob "
                       f"bytes — " + ", ".join(f"{k} ×{v}" for k, v in kinds.items()))
    if r["id"] == 4:
        names = {"ours": "ours", "skopeo": "skopeo, cold blob-info cache", "skopeo_warm": "skopeo, warm cache"}
        for tool, name in names.items():
            c = r["counts"].get(tool)
            if c is None:
                continue
            kinds = ", ".join(f"{k} ×{v}" for k, v in c["proxy"]["by_kind"].items())
            extra = f" (json `bytes` {c['json_bytes']})" if tool == "ours" else ""
            out.append(f"- {name} through the counting proxy: {c['blob_bytes']} blob bytes{extra}, "
                       f"{c['requests']} requests — {kinds}")
        out.append(f"- ours, json `bytes` of every timed run: {r['timed_json_bytes']}")
    if r["id"] == 9:
        for tool in ("ours", "skopeo"):
            runs = ", ".join(f"{x * 1000:.0f}" for x in r["first_request_runs"][tool])
            out.append(f"- {tool}: first request {r['first_request_s'][tool] * 1000:.0f} ms after the process "
                       f"started (median; runs {runs} ms, through zero-latency counting proxies)")
        if "floor_s" in r:
            f = r["floor_s"]
            out.append(f"- floor, timed in the same rounds: `python -c pass` {f['interpreter'] * 1000:.0f} ms; "
                       f"`python -c 'import httpx, httpcore, h11, argparse, logging, json, concurrent.futures.thread'` "
                       f"{f['dependencies'] * 1000:.0f} ms = {r['floor_ratio']:.2f}× skopeo's whole no-op")
    if r["id"] == 5:
        for tool in ("ours", "skopeo"):
            s = r["small"][tool]
            out.append(f"- {tool} with the small layer: median {_s(s['median'])}, peak RSS {s['rss_mib']:.1f} MiB, "
                       f"CPU {s['cpu']:.2f} s")
    out.append("")
    return out


def write_markdown(data: dict, md_path: Path, png_path: Path) -> None:
    m = data["machine"]
    rel = os.path.relpath(png_path, md_path.parent)
    smoke = " (**smoke run: tiny sizes, not a measurement**)" if data.get("smoke") else ""
    body = [
        BEGIN,
        f"Generated by `make bench` (`.venv/bin/python bench/run.py`) on {m['date']} in {data['total_seconds']:.0f} s"
        f"{smoke}.",
        "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM; {m['os']}; Python {m['python']}; "
        f"{m['skopeo']}; Distribution `{m['registry']}`.",
        "",
        f"**Method:** A B A B … ({data['pairs']} pair(s)"
        f"{'' if data.get('smoke') else ' after one untimed warm-up of each tool'}), ours = "
        "`python -m importcore import --source … --name … --image … --output json`, skopeo = "
        "`skopeo copy --all --preserve-digests` (plain HTTP). Each timed run copies into a fresh Distribution "
        "registry (new port, empty storage), so neither tool can reuse blobs from an earlier run. Wall time "
        "is the process's, start to exit (our Python start-up included); peak RSS and CPU come from "
        "`wait4()` rusage of that one process. Requests and bytes (scenarios 3, 4) are counted by a "
        "reverse proxy in front of each registry, in separate untimed runs. Scenarios 7 and 8 run every "
        "timed run of both tools through new delaying proxies, one in front of each registry, that hold each "
        f"request and each response half a round trip ({data['sizes'].get('rtt_ms', 30):g} ms round trip) and "
        "charge a new connection one more round trip (or, in the set-up free rows, nothing), and count "
        "requests and connections; bandwidth is not limited. The machine is shared: "
        "each pair starts after a quiet second, and a pair during which other processes used more than "
        f"0.25 cores is run again (up to 3 times; {data.get('redone_pairs', 0)} pairs were redone in this run); "
        "'other processes' below is the CPU they still used during the kept runs.",
        "",
        summary_table(data),
        "",
        f"![benchmark chart]({rel})",
        "",
    ]
    for r in data["scenarios"]:
        body += _details(r)
    body.append(END)
    generated = "\n".join(body)
    if md_path.exists() and BEGIN in (text := md_path.read_text()) and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        md_path.write_text(head + generated + tail)
        return
    md_path.write_text(
        "# Benchmarks\n\nOur importer against skopeo, on local CNCF Distribution registries (straight, and "
        "behind proxies that add a WAN's round trips), and the service's "
        "throughput on Azurite. Rerun with `make bench`; it rewrites the part between the bench markers "
        "and the chart, and keeps the notes below.\n\n" + generated + "\n\n## Notes\n\n(hand-written analysis)\n")


def chart(data: dict, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_id = {r["id"]: r for r in data["scenarios"]}
    short = {1: "1. multi-arch\nlarge layers", 2: "2. many small\nlayers", 3: "3. no-op\nre-import",
             4: "4. same registry\n(mounts)", 5: "5. one huge\nlayer", 9: "9. start-up\n(no-op, loopback)"}
    bars = []  # (label, ratio, ours median, skopeo median, goal)
    for r in data["scenarios"]:
        if r["id"] in short:
            goal = {1: 0.8, 2: 0.6, 9: 1.5}.get(r["id"])
            bars.append((short[r["id"]], r["ratio"], r["ours"]["median"], r["skopeo"]["median"], goal))
        elif r["id"] == 7:
            for part in r["parts"]:
                if part["mode"] == "setup-free":
                    bars.append((f"7. WAN {r['rtt_ms']:g} ms\n{_part_label(part)}", part["ratio"],
                                 part["ours"]["median"], part["skopeo"]["median"], part["goal"]))
        elif r["id"] == 8:
            bars.append((f"8. sync, {r['tags']} tags\nunchanged (WAN)", r["ratio"], r["ours"]["median"],
                         r["skopeo"]["median"], 0.3))
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [4, 2, 1.3]},
                             layout="constrained")
    colors = {"ours": "#1f77b4", "skopeo": "#ff7f0e"}

    ax = axes[0]
    x = list(range(len(bars)))
    ratios = [b[1] for b in bars]
    ax.bar(x, ratios, 0.6, color=[colors["ours"] if q <= 1 else "#d62728" for q in ratios])
    ax.axhline(1.0, color=colors["skopeo"], linewidth=2, label="skopeo = 1")
    for i, (_, ratio, ours, skopeo, goal) in enumerate(bars):
        ax.annotate(f"{ratio:.2f}\n{ours:.2f} s vs {skopeo:.2f} s", (i, ratio),
                    textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
        if goal:
            ax.plot([i - 0.35, i + 0.35], [goal, goal], color="black", linestyle="--", linewidth=1)
            ax.annotate(f"target {goal}", (i + 0.35, goal), fontsize=6, va="center", xytext=(2, 0),
                        textcoords="offset points")
    ax.set_xticks(x, [b[0] for b in bars], fontsize=7)
    ax.set_ylim(0, max(ratios + [1.2]) * 1.25)
    ax.set_ylabel("median wall time, ours ÷ skopeo (lower is better)")
    ax.set_title("wall time relative to skopeo")
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[1]
    groups = []
    if 1 in by_id:
        groups.append(("1. multi-arch", by_id[1]["ours"]["rss_mib"], by_id[1]["skopeo"]["rss_mib"]))
    if 5 in by_id:
        r = by_id[5]
        big, small = (part.replace("1 layer of ", "") for part in r["workload"].split(" vs "))
        groups.append((f"5. {small} layer", r["small"]["ours"]["rss_mib"], r["small"]["skopeo"]["rss_mib"]))
        groups.append((f"5. {big} layer", r["ours"]["rss_mib"], r["skopeo"]["rss_mib"]))
    for offset, idx, tool in ((-0.2, 1, "ours"), (0.2, 2, "skopeo")):
        ax.bar([i + offset for i in range(len(groups))], [g[idx] for g in groups], 0.4, label=tool,
               color=colors[tool])
    ax.axhline(100, color="grey", linestyle="--", linewidth=1)
    ax.text(-0.45, 101, "target ≤ 100 MiB", fontsize=8, color="grey", va="bottom")
    ax.set_ylim(0, 115)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=8)
    ax.set_ylabel("peak RSS, MiB")
    ax.set_title("peak memory")

    ax = axes[2]
    if 6 in by_id:
        r = by_id[6]
        ax.bar([0], [r["per_minute"]], 0.5, color=colors["ours"])
        ax.axhline(300, color="grey", linestyle="--", linewidth=1)
        ax.text(0, 303, "target 300/min", fontsize=8, color="grey", va="bottom", ha="center")
        ax.set_ylim(0, max(r["per_minute"], 300) * 1.2)
        ax.annotate(f"{r['per_minute']:.0f}/min", (0, r["per_minute"]), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=9)
        ax.set_xticks([0], [f"p50 {r['p50_s']:.1f} s\np95 {r['p95_s']:.1f} s"], fontsize=8)
    ax.set_ylabel("imports per minute")
    ax.set_title(f"6. service ({by_id[6]['imports'] if 6 in by_id else 0} imports)")

    smoke = " — SMOKE RUN (tiny sizes)" if data.get("smoke") else ""
    m = data["machine"]
    fig.suptitle(f"registry importer vs skopeo — {m['cpu']}, {m['cores']} cores{smoke}", fontsize=10)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
