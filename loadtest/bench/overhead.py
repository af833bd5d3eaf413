"""What the service costs on top of the model, in one run, with wrk (C) as the client.

It starts the service (`python -m service`, default settings unless H2H_* variables say
otherwise) and a bare FastAPI route that parses the same JSON (`loadtest.bench.bare_app`) on free
loopback ports, then prints, side by side:

  c=1 overhead     service p50 at batch 1 (wrk, one connection) minus ONNX Runtime in-process p50
  capacity         batch-1 requests/s at 32 connections
  CPU / request    server process CPU time / requests, at c=1 and c=32
  overload         goodput (successful rows/s) with large requests at c=200 over the same at c=8,
                   with the status counts from the server's own /metrics (no 5xx allowed)
  floor            the same c=1 and c=32 figures for the bare FastAPI route

and checks them against its serving targets (c=1 overhead, batch-1 capacity, overload goodput).
With --profile it samples the server with py-spy during the c=32 run and prints the top frames,
which is where the remaining time goes when a target is missed.

  python -m loadtest.bench.overhead --repo model_repository --model mha
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.atomic import write_json
from contract.cli import fail, settings_from, settings_parser
from contract.flags import ModelAlias
from loadtest.bench.pyspy import profile_top
from loadtest.bench.servers import start_bare_app, start_service, status_counts
from loadtest.bench.wrk_runner import run_wrk
from loadtest.client import load as hc
from loadtest.client.latency import summarize
from loadtest.models import PlanError, repo_models, resolve
from loadtest.processes import Server
from loadtest.results import machine
from loadtest.sweep.inproc import InprocModel

TARGETS = {"overhead_c1_ms": 0.3, "capacity_c32_rps": 3000.0, "overload_goodput": 0.8}


@dataclass
class Point:
    """One wrk run against one server."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    cpu_ms_per_request: float


def measure(server: Server, url: str, body: bytes, conc: int, seconds: float) -> Point:
    cpu0 = server.cpu_seconds()
    w = run_wrk(url, body, conc, seconds)
    cpu = server.cpu_seconds() - cpu0
    n = max(1, int(w["requests"]))
    return Point(
        rps=w["rps"],
        p50_ms=w["p50_ms"],
        p99_ms=w["p99_ms"],
        requests=n,
        non2xx=int(w["non2xx"]),
        cpu_ms_per_request=round(cpu * 1000.0 / n, 4),
    )


def overload(server: Server, url: str, body: bytes, rows: int, seconds: float) -> dict:
    """Goodput at c=200 over c=8 with `rows`-row requests, statuses from the server's /metrics."""
    out: dict = {}
    for conc in (8, 200):
        before = status_counts(server)
        w = run_wrk(url, body, conc, seconds)
        after = status_counts(server)
        counts = {s: after.get(s, 0) - before.get(s, 0) for s in after if after.get(s, 0) != before.get(s, 0)}
        ok = counts.get("200", 0)
        out[f"c{conc}"] = {
            "rows_per_s": round(ok * rows / w["seconds"], 1),
            "statuses": counts,
            "p50_ms": w["p50_ms"],
            "p99_ms": w["p99_ms"],
        }
    base = out["c8"]["rows_per_s"]
    out["goodput"] = round(out["c200"]["rows_per_s"] / base, 4) if base else 0.0
    out["server_errors"] = sum(v for k, v in out["c200"]["statuses"].items() if k.startswith("5"))
    return out


def inproc_p50(model_dir: Path, seq: int) -> float:
    m = InprocModel(model_dir, provider="auto")
    return summarize(m.time_shape(1, seq, repeats=2000, budget_s=3.0).seconds)["p50_ms"]


def _verdict(r: dict) -> list[str]:
    lines = []
    checks = (
        ("c=1 overhead (ms)", r["overhead_c1_ms"], TARGETS["overhead_c1_ms"], "<="),
        ("batch-1 capacity at c=32 (req/s)", r["service"]["c32"]["rps"], TARGETS["capacity_c32_rps"], ">="),
        ("overload goodput c=200 / c=8", r["overload"]["goodput"], TARGETS["overload_goodput"], ">="),
    )
    for label, value, target, op in checks:
        ok = value <= target if op == "<=" else value >= target
        lines.append(f"  {'PASS' if ok else 'MISS'}  {label}: {value:,.3f} (target {op} {target:,})")
    errors = r["overload"]["server_errors"]
    lines.append(f"  {'PASS' if errors == 0 else 'MISS'}  5xx under overload: {errors}")
    return lines


def report(r: dict) -> str:
    s, f = r["service"], r["floor"]
    rows = [
        f"model {r['model']}, batch 1 x seq {r['seq']}; in-process ORT p50 {r['inproc_p50_ms']:.3f} ms",
        f"{'':10} {'c=1 p50':>9} {'c=1 p99':>9} {'CPU/req':>9} {'c=32 req/s':>11} {'c=32 p50':>9} "
        f"{'c=32 p99':>9} {'CPU/req':>9}",
    ]
    for name, d in (("service", s), ("floor", f)):
        a, b = d["c1"], d["c32"]
        rows.append(
            f"{name:10} {a['p50_ms']:9.3f} {a['p99_ms']:9.3f} {a['cpu_ms_per_request']:9.3f} "
            f"{b['rps']:11,.0f} {b['p50_ms']:9.3f} {b['p99_ms']:9.3f} {b['cpu_ms_per_request']:9.3f}"
        )
    o = r["overload"]
    rows.append(
        f"overload ({r['overload_rows']}x{r['overload_seq']} rows): c=8 {o['c8']['rows_per_s']:,.0f} rows/s "
        f"{o['c8']['statuses']}, c=200 {o['c200']['rows_per_s']:,.0f} rows/s {o['c200']['statuses']}"
    )
    return "\n".join(rows + _verdict(r))


def run(a: OverheadSettings, model_name: str, model_dir: Path, vocab: int, max_seq: int) -> dict:
    seq = min(a.seq, max_seq)
    body1 = hc.predict_body(1, seq, vocab)
    big_seq = min(a.overload_seq, max_seq)
    big = hc.predict_body(a.overload_rows, big_seq, vocab)
    r: dict = {
        "model": model_name,
        "seq": seq,
        "overload_rows": a.overload_rows,
        "overload_seq": big_seq,
        "machine": machine(),
    }
    r["inproc_p50_ms"] = round(inproc_p50(model_dir, seq), 4)
    with start_service(Path(a.repo), [model_name], root=a.service_root) as svc:
        url = hc.predict_url(svc.base, model_name)
        run_wrk(url, body1, 1, 1.0)  # warm-up
        r["service"] = {"c1": asdict(measure(svc, url, body1, 1, a.duration))}
        if a.profile:
            with profile_top(svc.pid, a.duration) as top:
                r["service"]["c32"] = asdict(measure(svc, url, body1, 32, a.duration))
            r["profile_top"] = top.lines
        else:
            r["service"]["c32"] = asdict(measure(svc, url, body1, 32, a.duration))
        r["overload"] = overload(svc, url, big, a.overload_rows, a.duration)
    with start_bare_app() as floor:
        url = hc.predict_url(floor.base, model_name)
        run_wrk(url, body1, 1, 1.0)
        r["floor"] = {
            "c1": asdict(measure(floor, url, body1, 1, a.duration)),
            "c32": asdict(measure(floor, url, body1, 32, a.duration)),
        }
    r["overhead_c1_ms"] = round(r["service"]["c1"]["p50_ms"] - r["inproc_p50_ms"], 4)
    r["floor_overhead_c1_ms"] = round(r["floor"]["c1"]["p50_ms"], 4)
    return r


_TITLE = __doc__.splitlines()[0]


class OverheadSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="H2H_BENCH_OVERHEAD_", extra="forbid", protected_namespaces=()
    )

    repo: Path = Field(default=Path("model_repository"), description="model repository the service loads")
    model: ModelAlias = "mha"
    seq: int = Field(default=16, ge=1, description="tokens per row at batch 1")
    duration: float = Field(default=5.0, gt=0, description="seconds per wrk run")
    overload_rows: int = Field(default=32, ge=1, description="rows per request in the overload test")
    overload_seq: int = Field(default=64, ge=1, description="tokens per row in the overload test")
    service_root: Path | None = Field(
        default=None,
        description="run `python -m service` from this source tree (e.g. a worktree of an older commit, for before/after)",
    )
    profile: bool = Field(default=False, description="py-spy the server during the c=32 run")
    out: Path | None = Field(default=None, description="also write the figures to this JSON file")


def main(argv: list[str] | None = None) -> None:
    a = settings_from(
        OverheadSettings, settings_parser(OverheadSettings, "bench_overhead", _TITLE).parse_args(argv)
    )
    try:
        avail = repo_models(Path(a.repo))
        (model_name,) = resolve([a.model], avail, f"repository {a.repo}")
    except PlanError as exc:
        fail(str(exc))
    info = avail[model_name]
    try:
        r = run(a, model_name, info.dir, info.vocab_size, info.max_sequence_length)
    except (RuntimeError, OSError) as exc:
        fail(str(exc))
    print(report(r))
    for line in r.get("profile_top", []):
        print(f"  profile: {line}")
    print(json.dumps(r))
    if a.out:
        write_json(a.out, r)
    sys.exit(0)


if __name__ == "__main__":
    main()
