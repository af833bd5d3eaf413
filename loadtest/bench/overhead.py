"""What the service costs on top of the model, in one run, with wrk (C) as the client.

It starts the service (`python -m service` with its default settings: no H2H_* variable of this
shell reaches it) with each number of fronts asked (`--fronts 1 2`), optionally the same tree's
single-process shape or an older tree (`--before-root`, for before/after), and a bare FastAPI
route that parses the same JSON (`loadtest.bench.bare_app`), on free loopback ports, in
alternating rounds; then prints, side by side per server:

  c=1 overhead     p50 at batch 1 (wrk, one connection) minus ONNX Runtime in-process p50
  capacity         batch-1 requests/s at 32 connections
  CPU / request    CPU time of the server's processes / requests, at c=1 and c=32
  overload         goodput (successful rows/s) with large requests at c=200 over the same at c=8,
                   with the status counts from the server's own /metrics (no 5xx allowed)
  null engine      (`--null-engine`) batch-1 requests/s at c=32 with an engine that answers at
                   once without running a model: the fronts' own ceiling, per number of fronts
  floor            the same c=1 and c=32 figures for the bare FastAPI route

and checks them against its targets: the c=1 overhead within the bare route's p50 + 0.15 ms,
capacity at c=32 no lower than before, the null-engine ceiling at W=1 >= 0.6x the bare route's
and at W=2 >= 1.6x W=1's, overload goodput >= 0.8 with no 5xx. With --profile it samples the
server with py-spy during the c=32 run and prints the top frames.

  python -m loadtest.bench.overhead --repo model_repository --model mha --fronts 1 2 --null-engine
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
from contract.results import machine, summarize
from loadtest import processes
from loadtest.bench.pyspy import profile_top
from loadtest.bench.servers import start_bare_app, start_service, status_counts
from loadtest.bench.wrk_runner import run_wrk
from loadtest.client import load as hc
from loadtest.models import PlanError, repo_models, resolve
from loadtest.processes import Server
from loadtest.sweep.inproc import InprocModel
from service.settings import one_process_by_default

TARGETS = {
    "overhead_over_floor_ms": 0.15,  # c=1 overhead over in-process <= the bare route's p50 + this
    "null_over_floor": 0.8,  # null-engine c=32 req/s, the default shape, over the bare route's
    "model_over_floor": 0.5,  # c=32 req/s with the model, the default shape, over the bare route's
    "null_w2_over_w1": 1.6,  # null-engine c=32 req/s at W=2 over W=1's
    "capacity_over_before": 1.0,  # c=32 req/s with the model over the before tree's
    "overload_goodput": 0.8,
    "front_rss_mb": 70.0,  # a front process's resident memory under load
}


@dataclass
class Point:
    """One wrk run against one server."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    cpu_ms_per_request: float


def memory(server: Server) -> dict[str, float]:
    """Resident MB of each process of the server by role: the root ("service" in one process,
    else "supervisor"), "engine" (the child that loaded ONNX Runtime), "front" (the largest
    other child)."""
    pids = processes.tree(server.pid)
    out: dict[str, float] = {}
    for pid in pids:
        rss = processes.rss_mb(pid)
        if pid == server.pid:
            out["root"] = rss
        elif processes.maps_onnxruntime(pid):
            out["engine"] = rss
        else:
            out["front"] = max(rss, out.get("front", 0.0))
    return out


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


def _check(label: str, value: float, target: float, op: str) -> str:
    ok = value <= target if op == "<=" else value >= target
    return f"  {'PASS' if ok else 'MISS'}  {label}: {value:,.3f} (target {op} {target:,.3f})"


def _verdict(r: dict) -> list[str]:
    floor, main = r["floor"], r["services"][r["main"]]
    lines = [
        _check(
            f"c=1 overhead, {r['main']} (ms)",
            main["overhead_c1_ms"],
            floor["c1"]["p50_ms"] + TARGETS["overhead_over_floor_ms"],
            "<=",
        )
    ]
    if "before" in r["services"]:
        before = r["services"]["before"]["c32"]["rps"]
        ratio = main["c32"]["rps"] / before if before else 0.0
        lines.append(
            _check(f"c=32 req/s, {r['main']} / before", ratio, TARGETS["capacity_over_before"], ">=")
        )
    null, key = r.get("null", {}), r["main"].replace("=", "")
    if key in null:
        ratio = null[key]["rps"] / floor["c32"]["rps"]
        lines.append(
            _check(
                f"null engine c=32 req/s, {r['main']} / bare route", ratio, TARGETS["null_over_floor"], ">="
            )
        )
    ratio = main["c32"]["rps"] / floor["c32"]["rps"]
    lines.append(_check(f"c=32 req/s, {r['main']} / bare route", ratio, TARGETS["model_over_floor"], ">="))
    fronts = [d["rss_mb"]["front"] for d in r["services"].values() if "front" in d.get("rss_mb", {})]
    if fronts:
        lines.append(_check("front RSS under load (MB), largest", max(fronts), TARGETS["front_rss_mb"], "<="))
    if "W1" in null and "W2" in null:
        ratio = null["W2"]["rps"] / null["W1"]["rps"]
        lines.append(_check("null engine c=32 req/s, W=2 / W=1", ratio, TARGETS["null_w2_over_w1"], ">="))
    for name, svc in r["services"].items():
        o = svc["overload"]
        lines.append(
            _check(f"overload goodput c=200 / c=8, {name}", o["goodput"], TARGETS["overload_goodput"], ">=")
        )
        lines.append(_check(f"5xx under overload, {name}", o["server_errors"], 0, "<="))
    return lines


def report(r: dict) -> str:
    rows = [
        f"model {r['model']}, batch 1 x seq {r['seq']}; in-process ORT p50 {r['inproc_p50_ms']:.3f} ms; "
        f"{r['rounds']} round(s), medians",
        f"{'':12} {'c=1 p50':>9} {'c=1 p99':>9} {'CPU/req':>9} {'c=32 req/s':>11} {'c=32 p50':>9} "
        f"{'c=32 p99':>9} {'CPU/req':>9} {'goodput':>8}",
    ]
    for name, d in [*r["services"].items(), ("bare route", r["floor"])]:
        a, b = d["c1"], d["c32"]
        good = f"{d['overload']['goodput']:8.3f}" if "overload" in d else ""
        rows.append(
            f"{name:12} {a['p50_ms']:9.3f} {a['p99_ms']:9.3f} {a['cpu_ms_per_request']:9.3f} "
            f"{b['rps']:11,.0f} {b['p50_ms']:9.3f} {b['p99_ms']:9.3f} {b['cpu_ms_per_request']:9.3f} {good}"
        )
    for name, p in r.get("null", {}).items():
        rows.append(
            f"null engine {name}: c=32 {p['rps']:,.0f} req/s, p50 {p['p50_ms']:.3f} ms, CPU/req {p['cpu_ms_per_request']:.3f} ms"
        )
    for name, d in r["services"].items():
        rows.append(f"RSS MB under load, {name}: {d.get('rss_mb', {})}")
    return "\n".join(rows + _verdict(r))


def _median(points: list[dict], key: str = "rps") -> dict:
    """The run with the median `key` (its other figures with it, so they stay consistent); the
    lower of the middle two for an even count, so two rounds report the worse one."""
    return sorted(points, key=lambda p: p[key])[(len(points) - 1) // 2]


def _measure_service(
    svc: Server, model: str, body1: bytes, big: bytes, a: OverheadSettings, full: bool
) -> dict:
    url = hc.predict_url(svc.base, model)
    run_wrk(url, body1, 1, 1.0)  # warm-up
    if not full:
        return {"c32": asdict(measure(svc, url, body1, 32, a.duration)), "rss_mb": memory(svc)}
    out: dict = {"c1": asdict(measure(svc, url, body1, 1, a.duration))}
    out["c32"] = asdict(measure(svc, url, body1, 32, a.duration))
    out["rss_mb"] = memory(svc)
    out["overload"] = overload(svc, url, big, a.overload_rows, a.duration)
    if a.profile:  # runs of their own: the sampler's CPU stays out of the figures above
        out["profile"] = {f"c{c}": _profiled(svc, url, body1, c, a.duration) for c in (1, 32)}
    return out


def _profiled(svc: Server, url: str, body: bytes, conc: int, seconds: float) -> dict:
    """One wrk run under py-spy: the samples by process role and stage, the top frames, and the
    run's CPU per request (to turn a stage's share into milliseconds)."""
    with profile_top(svc.pid, seconds) as prof:
        point = measure(svc, url, body, conc, seconds)
    return {"cpu_ms_per_request": point.cpu_ms_per_request, "stages": prof.stages, "top": prof.lines}


def _servers(a: OverheadSettings) -> list[tuple[str, Path | None, list[str], bool]]:
    """(label, source tree, flags, full set of figures) for every server measured."""
    out: list[tuple[str, Path | None, list[str], bool]] = []
    if a.before_root is not None:
        out.append(("before", a.before_root, [], True))
    if a.single_process:
        out.append(("single", a.service_root, ["--single-process"], True))
    out += [(f"W={w}", a.service_root, ["--fronts", str(w)], True) for w in a.fronts]
    if a.null_engine and a.single_process:
        out.append(("null single", a.service_root, ["--single-process", "--null-engine"], False))
    if a.null_engine:
        out += [
            (f"null W={w}", a.service_root, ["--fronts", str(w), "--null-engine"], False) for w in a.fronts
        ]
    return out


def main_shape(a: OverheadSettings) -> str:
    """The label of the shape `python -m service` takes by default on this host, when measured
    (one process on a CPU host with few cores: service.settings.one_process_by_default)."""
    one = a.single_process and one_process_by_default("auto")
    return "single" if one else f"W={a.fronts[0]}"


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
        "rounds": a.rounds,
        "main": main_shape(a),
        "machine": machine(),
    }
    r["inproc_p50_ms"] = round(inproc_p50(model_dir, seq), 4)
    raw: dict[str, list[dict]] = {}
    for _ in range(a.rounds):  # alternating rounds: drift on a shared box hits every server alike
        for label, root, flags, full in _servers(a):
            with start_service(Path(a.repo), [model_name], root=root, flags=flags) as svc:
                raw.setdefault(label, []).append(_measure_service(svc, model_name, body1, big, a, full))
        with start_bare_app() as floor:
            url = hc.predict_url(floor.base, model_name)
            run_wrk(url, body1, 1, 1.0)
            raw.setdefault("floor", []).append(
                {
                    "c1": asdict(measure(floor, url, body1, 1, a.duration)),
                    "c32": asdict(measure(floor, url, body1, 32, a.duration)),
                }
            )
    r["raw"] = raw
    return summarize_rounds(r)


def summarize_rounds(r: dict) -> dict:
    """The medians of the raw rounds (`r["raw"]`: label -> one entry per round) into `r`."""
    raw = r["raw"]
    r["floor"] = {k: _median([p[k] for p in raw["floor"]]) for k in ("c1", "c32")}
    r["services"], r["null"] = {}, {}
    for label, runs in raw.items():
        if label.startswith("null "):
            r["null"][label.removeprefix("null ").replace("=", "")] = {
                **_median([p["c32"] for p in runs]),
                "rss_mb": runs[-1].get("rss_mb", {}),
            }
        elif label != "floor":
            # latency: the higher middle one, throughput and goodput the lower
            c1 = sorted((p["c1"] for p in runs), key=lambda c: c["p50_ms"])[len(runs) // 2]
            svc = {"c1": c1, "c32": _median([p["c32"] for p in runs])}
            svc["overload"] = _median([p["overload"] for p in runs], "goodput")
            svc["overhead_c1_ms"] = round(svc["c1"]["p50_ms"] - r["inproc_p50_ms"], 4)
            svc["rss_mb"] = runs[-1].get("rss_mb", {})
            if any("profile" in p for p in runs):
                svc["profile"] = next(p["profile"] for p in runs if "profile" in p)
            r["services"][label] = svc
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
    fronts: list[int] = Field(default=[1], description="front counts to serve with (one service run each)")
    null_engine: bool = Field(
        default=False,
        description="also measure the fronts' own ceiling: an engine answering at once, no model",
    )
    single_process: bool = Field(default=False, description="also measure this tree's single-process shape")
    rounds: int = Field(
        default=1, ge=1, description="alternating rounds over every server (medians reported)"
    )
    service_root: Path | None = Field(
        default=None, description="run `python -m service` from this source tree"
    )
    before_root: Path | None = Field(
        default=None,
        description="also measure `python -m service` from this tree (e.g. a worktree of an older commit) "
        "with its own defaults: before/after in one run",
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
    for name, svc in r["services"].items():
        for conc, prof in svc.get("profile", {}).items():
            for role, stages in prof["stages"].items():
                split = ", ".join(f"{st} {share:.1%}" for st, share in stages.items())
                print(
                    f"  profile {name} {conc} ({prof['cpu_ms_per_request']:.3f} CPU ms/req) {role}: {split}"
                )
    print(json.dumps(r))
    if a.out:
        write_json(a.out, r)
    sys.exit(0)


if __name__ == "__main__":
    main()
