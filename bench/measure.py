"""Run one command and measure it: wall time, peak RSS and CPU time of exactly that process.

`os.wait4(pid)` returns the rusage of the one child waited for (ru_maxrss is its peak resident
set, in KiB on Linux) — exact, no polling, no /usr/bin/time needed (a small launcher does what
GNU time does). CPU time of long-running helpers (the registries) is read with psutil before and
after, to show where a run's CPU went.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field

import psutil

__all__ = ["Run", "cpu_seconds", "median", "run_command"]


@dataclass
class Run:
    tool: str
    wall: float  # seconds
    rc: int
    rss_mib: float  # peak resident set of the process
    cpu: float  # user + system seconds of the process
    stdout: str = ""
    stderr: str = ""
    # launcher_cpu; started (time.monotonic() at fork: the same clock as the proxies' timestamps); meters
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["stdout"] = out["stdout"][-2000:]
        out["stderr"] = out["stderr"][-2000:]
        return out


# The launcher is a minimal interpreter (-I -S: ~8 MiB) that forks and execs the command and reports
# wait4()'s rusage. Why not wait4 from here: Linux copies the parent's RSS high-water mark into the
# child's ru_maxrss at fork/exec, so a child of this ~50 MiB bench process would never report less.
_LAUNCHER = r"""
import json, os, resource, sys, time
fd, argv = int(sys.argv[1]), sys.argv[2:]
t0, started = time.perf_counter(), time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
me = resource.getrusage(resource.RUSAGE_SELF)
os.write(fd, json.dumps({"wall": wall, "rc": os.waitstatus_to_exitcode(status), "maxrss_kib": ru.ru_maxrss,
                         "cpu": ru.ru_utime + ru.ru_stime, "launcher_cpu": me.ru_utime + me.ru_stime,
                         "started": started}).encode())
"""


def run_command(tool: str, argv: list[str], env: dict[str, str], *, timeout: float = 900.0,
                cwd: str | None = None) -> Run:
    """Run argv through the launcher; its measurements (a non-zero rc is kept, not raised)."""
    read, write = os.pipe()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(write), *argv], env=env,
                                    stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd, pass_fds=(write,))
        finally:
            os.close(write)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # the launcher; its child is then orphaned but bounded by the registries going away
            proc.wait()
        with os.fdopen(read, "rb") as pipe:
            report = pipe.read()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if not report:
        return Run(tool=tool, wall=float("nan"), rc=proc.returncode or -1, rss_mib=0.0, cpu=0.0, stdout=stdout,
                   stderr=stderr + f"\n(launcher gave no report; exit {proc.returncode})")
    data = json.loads(report)
    return Run(tool=tool, wall=data["wall"], rc=data["rc"], rss_mib=data["maxrss_kib"] / 1024, cpu=data["cpu"],
               stdout=stdout, stderr=stderr, extra={"launcher_cpu": data["launcher_cpu"], "started": data["started"]})


def cpu_seconds(pid: int | None) -> float:
    """user + system CPU seconds a running process has used so far (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except psutil.Error:
        return 0.0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
