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
import statistics
import sys
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.cli import fail, settings_from, settings_parser
from contract.flags import ModelAlias, TokensPerRow
from contract.results import summarize
from loadtest.bench.wrk_runner import run_wrk, wrk_command
from loadtest.client import load as hc
from loadtest.client.driver import Driver, LoadSpec
from loadtest.models import PlanError, resolve, service_models
from loadtest.urls import ServiceUrl


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


class WrkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_BENCH_WRK_", extra="forbid", protected_namespaces=())

    url: ServiceUrl = "http://127.0.0.1:8000"
    model: ModelAlias = "mha"
    batch: int = Field(default=1, ge=1, description="rows per request")
    seq: TokensPerRow = Field(default=16, ge=1)
    concurrency: int = Field(default=8, ge=1, description="connections, both tools")
    threads: int = Field(default=2, ge=1, description="wrk threads")
    duration: int = Field(default=10, ge=1, description="seconds for each tool, each round")
    rounds: int = Field(
        default=1,
        ge=1,
        description="alternate harness and wrk this many times (the ratio is the median of the rounds)",
    )
    client_procs: int = Field(default=1, ge=1, description="harness client processes")


def main(argv: list[str] | None = None) -> None:
    p = settings_parser(
        WrkSettings, "bench_wrk", __doc__.splitlines()[0], short={"concurrency": "-c", "threads": "-t"}
    )
    a = settings_from(WrkSettings, p.parse_args(argv))
    base = a.url
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
            try:
                w = run_wrk(url, body, a.concurrency, a.duration, a.threads)
            except RuntimeError as exc:
                fail(str(exc))
            if i % 2 == 1:
                h = _harness(driver, url, body, a.concurrency, a.duration)
            rounds.append((h, w))
            _print_round(i, a, h, w)
    _print_summary(
        name, a, seq, body, rounds, " ".join(wrk_command(url, a.concurrency, a.duration, a.threads))
    )
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
