"""Cross-check the harness's throughput with wrk, an independent load generator.

Runs both closed loops at the same concurrency, with the same request body, against a running
service, then prints both requests/s figures and their ratio (harness / wrk). wrk is C and uses
its own threads, so it is the better estimate of what the server can do; a ratio well below 1
means the Python client, not the server, is the bottleneck at that concurrency.

  python -m loadtest.bench_wrk --url http://127.0.0.1:8000 --model mha-small --batch 1 --seq 16 -c 8
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtest import http_client as hc
from loadtest.stats import summarize
from loadtest.sweep import PlanError, resolve, service_models
from models.cliargs import OneLineArgumentParser, fail

LUA = Path(__file__).with_name("wrk_post.lua")


def parse_wrk(stdout: str) -> dict[str, float]:
    m = re.search(r"^H2H_WRK (.*)$", stdout, re.M)
    if not m:
        raise ValueError("wrk printed no H2H_WRK summary line")
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


async def _harness(url: str, body: bytes, conc: int, duration: float) -> hc.LoadResult:
    async with hc.make_client(conc, 30.0) as client:
        await hc.closed_loop(client, url, body, conc, 0.5)
        return await hc.closed_loop(client, url, body, conc, duration)


def main(argv: list[str] | None = None) -> None:
    p = OneLineArgumentParser(prog="bench_wrk", description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--model", default="mha", help="model name or arch alias (mha/sha)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("-c", "--concurrency", type=int, default=8)
    p.add_argument("-t", "--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--duration", type=int, default=10, help="seconds for each tool")
    a = p.parse_args(argv)
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

    res = asyncio.run(_harness(url, body, a.concurrency, a.duration))
    h_rps = res.ok / res.window_s
    h_p50 = summarize(res.latencies)["p50_ms"]

    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as fh:
        fh.write(body)
    try:
        cmd = [wrk, f"-t{min(a.threads, a.concurrency)}", f"-c{a.concurrency}", f"-d{a.duration}s", "--timeout", "30s",
               "-s", str(LUA), url]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env={"H2H_WRK_BODY": fh.name, "PATH": "/usr/bin:/bin"},
                              timeout=a.duration + 60)  # fmt: skip
    finally:
        Path(fh.name).unlink(missing_ok=True)
    try:
        w = parse_wrk(proc.stdout)
    except ValueError as exc:
        fail(f"{exc}: {(proc.stderr or proc.stdout).strip()[:200]}")
    out = {
        "model": name, "batch": a.batch, "seq": seq, "concurrency": a.concurrency, "body_bytes": len(body),
        "harness_rps": round(h_rps, 2), "harness_p50_ms": h_p50, "harness_errors": res.error_count,
        "wrk_rps": w["rps"], "wrk_p50_ms": w["p50_ms"], "wrk_errors": int(w["non2xx"] + w["connect"] + w["read"]
                                                                            + w["write"] + w["timeout"]),
        "ratio_harness_over_wrk": round(h_rps / w["rps"], 4) if w["rps"] else None,
        "wrk_command": " ".join(cmd),
    }  # fmt: skip
    print(
        f"harness (httpx, c={a.concurrency}): {h_rps:,.1f} req/s, p50 {h_p50:.2f} ms, {res.error_count} errors"
    )
    print(f"wrk     (C,     c={a.concurrency}): {w['rps']:,.1f} req/s, p50 {w['p50_ms']:.2f} ms, "
          f"{out['wrk_errors']} errors")  # fmt: skip
    print(f"ratio harness / wrk = {out['ratio_harness_over_wrk']}")
    print(json.dumps(out))
    sys.exit(0)


if __name__ == "__main__":
    main()
