"""Cross-check the harness's throughput with wrk, an independent load generator.

Runs both closed loops at the same concurrency, with the same request body, against a running
service, then prints both requests/s figures, their ratio (harness / wrk) and each client's own
CPU time per request. wrk is C and uses its own threads, so it is the better estimate of what
the server can do; a ratio well below 1 means the Python client, not the server, is the
bottleneck at that concurrency. On a shared box, `--rounds N` alternates the two tools N times
and reports the median ratio.

  python -m loadtest.bench.wrk --url http://127.0.0.1:8000 --model mha-small --batch 1 --seq 16 -c 8 --rounds 5
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from contract.cli import OneLineArgumentParser, fail
from loadtest.client import load as hc
from loadtest.client.driver import Driver, LoadSpec
from loadtest.client.latency import summarize
from loadtest.models import PlanError, resolve, service_models

LUA = Path(__file__).with_name("wrk_post.lua")


def parse_wrk(stdout: str) -> dict[str, float]:
    m = re.search(r"^H2H_WRK (.*)$", stdout, re.M)
    if not m:
        raise ValueError("wrk printed no H2H_WRK summary line")
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def _harness(driver: Driver, url: str, body: bytes, conc: int, duration: float) -> dict[str, float]:
    res = driver.run(LoadSpec(url, body, "closed", duration, concurrency=conc, warmup=0.5))
    n = res.ok + res.error_count
    return {
        "rps": res.ok / res.window_s,
        "p50_ms": summarize(res.latencies)["p50_ms"] or 0.0,
        "errors": res.error_count,
        "cpu_us_per_req": res.client_cpu_s / max(1, n) * 1e6,
        "cpu_cores": res.client_cpu_s / res.window_s,
    }


def _wrk(
    wrk: str, url: str, body: bytes, conc: int, threads: int, duration: int
) -> tuple[dict[str, float], str]:
    """One wrk run; its own CPU time (from the children's rusage) per request is added."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as fh:
        fh.write(body)
    cmd = [
        wrk,
        f"-t{min(threads, conc)}",
        f"-c{conc}",
        f"-d{duration}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={"H2H_WRK_BODY": fh.name, "PATH": "/usr/bin:/bin"},
            timeout=duration + 60,
        )
    finally:
        Path(fh.name).unlink(missing_ok=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        w = parse_wrk(proc.stdout)
    except ValueError as exc:
        fail(f"{exc}: {(proc.stderr or proc.stdout).strip()[:200]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    w["errors"] = w["non2xx"] + w["connect"] + w["read"] + w["write"] + w["timeout"]
    w["cpu_us_per_req"] = cpu / max(1.0, w["requests"]) * 1e6
    w["cpu_cores"] = cpu / w["seconds"]
    return w, " ".join(cmd)


def _parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(prog="bench_wrk", description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--model", default="mha", help="model name or arch alias (mha/sha)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("-c", "--concurrency", type=int, default=8)
    p.add_argument("-t", "--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--duration", type=int, default=10, help="seconds for each tool, each round")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate harness and wrk this many times (the ratio is the median of the rounds)",
    )
    p.add_argument("--client-procs", type=int, default=1, help="harness client processes")
    return p


def main(argv: list[str] | None = None) -> None:
    a = _parser().parse_args(argv)
    if min(a.concurrency, a.rounds, a.client_procs, a.duration, a.batch, a.seq) < 1:
        fail("bench_wrk: --concurrency, --rounds, --client-procs, --duration, --batch and --seq must be >= 1")
    wrk = shutil.which("wrk")
    if wrk is None:
        fail("wrk is not installed (apt-get install wrk)")
    base = a.url.rstrip("/")
    try:
        hc.check_ready(base)
        served = service_models(base)
        (name,) = resolve([a.model], served, f"service at {base}")
    except (PlanError, hc.ServiceUnreachable) as exc:
        fail(str(exc))
    info = served[name]
    seq = min(a.seq, info.max_sequence_length)
    body = hc.predict_body(a.batch, seq, info.vocab_size)
    url = hc.predict_url(base, name)
    rounds = []
    with Driver(a.client_procs) as driver:
        for i in range(a.rounds):  # alternate the order so drift on a shared box hits both tools
            if i % 2 == 0:
                h = _harness(driver, url, body, a.concurrency, a.duration)
            w, cmd = _wrk(wrk, url, body, a.concurrency, a.threads, a.duration)
            if i % 2 == 1:
                h = _harness(driver, url, body, a.concurrency, a.duration)
            rounds.append((h, w))
            _print_round(i, a, h, w)
    _print_summary(name, a, seq, body, rounds, cmd)
    sys.exit(0)


def _print_round(i: int, a: Any, h: dict[str, float], w: dict[str, float]) -> None:
    tag = f"[{i + 1}/{a.rounds}] " if a.rounds > 1 else ""
    print(
        f"{tag}harness (wire, {a.client_procs} proc, c={a.concurrency}): {h['rps']:,.1f} req/s, "
        f"p50 {h['p50_ms']:.2f} ms, {h['errors']} errors, client CPU {h['cpu_us_per_req']:.0f} us/req "
        f"({h['cpu_cores']:.0%} of a core)"
    )
    print(
        f"{tag}wrk     (C, {min(a.threads, a.concurrency)} threads, c={a.concurrency}): {w['rps']:,.1f} req/s, "
        f"p50 {w['p50_ms']:.2f} ms, {int(w['errors'])} errors, client CPU {w['cpu_us_per_req']:.0f} us/req "
        f"({w['cpu_cores']:.0%} of a core)"
    )
    print(f"{tag}ratio harness / wrk = {h['rps'] / w['rps']:.3f}" if w["rps"] else f"{tag}wrk served nothing")


def _print_summary(name: str, a: Any, seq: int, body: bytes, rounds: list, cmd: str) -> None:
    ratios = [h["rps"] / w["rps"] for h, w in rounds if w["rps"]]
    med = lambda xs: float(statistics.median(xs)) if xs else None  # noqa: E731
    out = {
        "model": name,
        "batch": a.batch,
        "seq": seq,
        "concurrency": a.concurrency,
        "body_bytes": len(body),
        "client_procs": a.client_procs,
        "rounds": len(rounds),
        "harness_rps": round(med([h["rps"] for h, _ in rounds]), 2),
        "harness_p50_ms": med([h["p50_ms"] for h, _ in rounds]),
        "harness_errors": int(sum(h["errors"] for h, _ in rounds)),
        "harness_cpu_us_per_req": round(med([h["cpu_us_per_req"] for h, _ in rounds]), 1),
        "harness_cpu_cores": round(med([h["cpu_cores"] for h, _ in rounds]), 3),
        "wrk_rps": round(med([w["rps"] for _, w in rounds]), 2),
        "wrk_p50_ms": med([w["p50_ms"] for _, w in rounds]),
        "wrk_errors": int(sum(w["errors"] for _, w in rounds)),
        "wrk_cpu_us_per_req": round(med([w["cpu_us_per_req"] for _, w in rounds]), 1),
        "ratio_harness_over_wrk": round(med(ratios), 4) if ratios else None,
        "ratios": [round(r, 4) for r in ratios],
        "wrk_command": cmd,
    }
    if len(rounds) > 1:
        print(f"median ratio harness / wrk over {len(rounds)} rounds = {out['ratio_harness_over_wrk']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
