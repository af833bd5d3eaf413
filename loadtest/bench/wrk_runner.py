"""wrk (a C load generator) POSTing one body through wrk_post.lua, its summary line read back as
numbers, with wrk's own CPU time per request: the yardstick both the overhead benchmark and the
wrk cross-check of our Python client use.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

LUA = Path(__file__).with_name("wrk_post.lua")


def parse_wrk(stdout: str) -> dict[str, float]:
    m = re.search(r"^H2H_WRK (.*)$", stdout, re.M)
    if not m:
        raise ValueError("wrk printed no H2H_WRK summary line")
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def wrk_command(url: str, conc: int, seconds: float, threads: int = 2) -> list[str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk, or make install)")
    duration = f"-d{max(1, round(seconds))}s"
    return [wrk, f"-t{min(threads, conc)}", f"-c{conc}", duration, "--timeout", "30s", "-s", str(LUA), url]


def run_wrk(url: str, body: bytes, conc: int, seconds: float, threads: int = 2) -> dict[str, float]:
    """One wrk run (closed loop, `conc` connections) POSTing `body`: its summary line as numbers,
    plus errors of every kind and wrk's CPU time (children's rusage) per request and in cores.
    RuntimeError when wrk is missing or prints no summary."""
    cmd = wrk_command(url, conc, seconds, threads)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.NamedTemporaryFile("wb", suffix=".json") as fh:
        fh.write(body)
        fh.flush()
        env = {"H2H_WRK_BODY": fh.name, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        w = parse_wrk(proc.stdout)
    except ValueError as exc:
        raise RuntimeError(f"{exc}: {(proc.stderr or proc.stdout).strip()[:200]}") from None
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    w["errors"] = w["non2xx"] + w["connect"] + w["read"] + w["write"] + w["timeout"]
    w["cpu_us_per_req"] = cpu / max(1.0, w["requests"]) * 1e6
    w["cpu_cores"] = cpu / w["seconds"]
    return w
