"""Plan and run a sweep: resolve models, expand the grid into points, measure each point,
write results after every point (an interrupted sweep keeps what it measured)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contract import results
from contract.results import ResultMeta, SweepRow, summarize
from loadtest.client import load as hc
from loadtest.client import promscrape
from loadtest.client.driver import Driver, LoadSpec
from loadtest.models import ModelInfo, PlanError, repo_models, resolve, service_models
from loadtest.settings import LoadtestSettings
from loadtest.sweep.grid import PRESETS, GridError, parse_list, parse_names
from loadtest.sweep.inproc import InprocModel
from service.runtime import nvml
from service.runtime.config import RuntimeConfig
from service.runtime.session import choose_providers

log = logging.getLogger(__name__)


@dataclass
class Point:
    mode: str  # inproc | http
    load: str  # inproc | closed | open
    model: str
    batch: int
    seq: int
    concurrency: int = 1
    rate: float | None = None

    def label(self) -> str:
        if self.load == "inproc":
            how = "inproc"
        elif self.load == "closed":
            how = f"http c={self.concurrency}"
        else:
            how = f"http {self.rate:g}/s"
        return f"{how} {self.model} b={self.batch} s={self.seq}"


@dataclass
class Plan:
    settings: LoadtestSettings
    modes: list[str]
    models: dict[str, ModelInfo]
    points: list[Point]
    duration: float
    notes: list[str] = field(default_factory=list)

    def estimate_s(self) -> float:
        s = self.settings
        per = {"inproc": s.inproc_budget + 0.2, "closed": self.duration + s.warmup + 0.3}
        per["open"] = per["closed"]
        return sum(per[p.load] for p in self.points)


# -- planning ---------------------------------------------------------------------------


def _flag(value: str | None, default: list, kind: type = int) -> list:
    if value is None:
        return list(default)
    try:
        return parse_list(value, kind)
    except GridError as exc:
        raise PlanError(str(exc)) from None


@dataclass
class _Grid:
    """The lists each axis takes once flags, the preset and the hardware have had their say."""

    batches: list[int]
    seqs: list[int]
    http_batches: list[int]
    http_seqs: list[int]
    concurrency: list[int]
    rates: list[float]
    duration: float


def plan(s: LoadtestSettings, *, check_service: bool = True) -> Plan:
    """The points to measure, checked before any is: a bad flag or model fails in seconds with one
    line rather than minutes into a sweep."""
    preset = PRESETS[s.preset]
    mode = s.mode or preset.mode
    modes = ["inproc", "http"] if mode == "both" else [mode]
    notes: list[str] = []
    models = _models(s, _names(s), modes, check_service=check_service)
    grid = _grid(s, modes, notes)
    points: list[Point] = []
    if "inproc" in modes:
        points += _inproc_points(models, grid, notes)
    if "http" in modes:
        points += _http_points(models, grid, notes)
    if not points:
        raise PlanError("the grid is empty")
    if len(points) > s.max_points:
        raise PlanError(f"{len(points)} points is more than --max-points {s.max_points}; shrink the grid")
    return Plan(s, modes, models, points, grid.duration, list(dict.fromkeys(notes)))


def _names(s: LoadtestSettings) -> list[str]:
    try:
        return parse_names(s.models) if s.models else list(PRESETS[s.preset].models)
    except GridError as exc:
        raise PlanError(f"--models: {exc}") from None


def _models(
    s: LoadtestSettings, names: list[str], modes: list[str], *, check_service: bool
) -> dict[str, ModelInfo]:
    """In-process runs take the models from the repository; over HTTP the service must serve them
    (the same ones when both modes run, so the two measure the same graphs)."""
    models: dict[str, ModelInfo] = {}
    if "inproc" in modes:
        avail = repo_models(s.repo)
        models = {n: avail[n] for n in resolve(names, avail, f"repository {s.repo}")}
    if "http" in modes:
        if check_service:
            hc.check_ready(s.url)
        served = service_models(s.url)
        if models:
            _served_as(models, served, s.url)
        else:
            models = {n: served[n] for n in resolve(names, served, f"service at {s.url}")}
        for n, info in models.items():
            info.server_max_batch = int(hc.model_config(s.url, n).get("max_batch_size") or 0) or None
    return models


def _served_as(models: dict[str, ModelInfo], served: dict[str, ModelInfo], url: str) -> None:
    """The repository chose the models; record how the service runs each, or refuse if it lacks one."""
    missing = [n for n in models if n not in served]
    if missing:
        raise PlanError(f"service at {url} does not serve {', '.join(missing)}")
    for n, info in models.items():
        info.server_provider, info.server_variant = served[n].server_provider, served[n].server_variant


def _grid(s: LoadtestSettings, modes: list[str], notes: list[str]) -> _Grid:
    """Flags win; otherwise the preset's axes, or its smaller CPU grid when in-process runs find no
    GPU (the preset's main grid is sized for one)."""
    preset = PRESETS[s.preset]
    on_gpu = _inproc_on_gpu(s) if "inproc" in modes and s.batch is None and s.seq is None else False
    use_cpu_grid = "inproc" in modes and not on_gpu and preset.cpu_batch is not None
    batch_default = preset.cpu_batch if use_cpu_grid else preset.batch
    seq_default = preset.cpu_seq if use_cpu_grid and preset.cpu_seq else preset.seq
    if use_cpu_grid and s.batch is None and s.seq is None:
        notes.append(
            f"preset {s.preset}: no GPU for in-process runs, using the smaller CPU grid "
            f"batch {batch_default} x seq {seq_default}"
        )
    batches = _flag(s.batch, batch_default)
    seqs = _flag(s.seq, seq_default)
    return _Grid(
        batches=batches,
        seqs=seqs,
        http_batches=_flag(s.batch, preset.http_batch or batches),
        http_seqs=_flag(s.seq, preset.http_seq or seqs),
        concurrency=_flag(s.concurrency, preset.concurrency),
        rates=_flag(s.rate, preset.rates, float) if s.rate is not None else list(preset.rates),
        duration=s.duration or preset.duration,
    )


def _clamp(info: ModelInfo, wanted: list[int], notes: list[str]) -> list[int]:
    """Sequence lengths the model takes: longer ones run at its maximum, and the user is told."""
    cap = info.max_sequence_length
    over = [q for q in wanted if q > cap]
    if over:
        notes.append(
            f"{info.name}: sequence length {', '.join(map(str, over))} clamped to its "
            f"max_sequence_length {cap}"
        )
    return sorted({min(q, cap) for q in wanted})


def _inproc_points(models: dict[str, ModelInfo], grid: _Grid, notes: list[str]) -> list[Point]:
    """Ordered by sequence, then batch, then model: the models take turns at each shape."""
    per_model = {n: _clamp(i, grid.seqs, notes) for n, i in models.items()}
    points = []
    for q in sorted(set().union(*per_model.values())):
        for b in grid.batches:
            points += [Point("inproc", "inproc", n, b, q) for n in models if q in per_model[n]]
    return points


def _http_points(models: dict[str, ModelInfo], grid: _Grid, notes: list[str]) -> list[Point]:
    """Every load (closed loops, then open rates) over the shapes; batches larger than the service
    accepts are left out with a note rather than measured as a column of errors."""
    per_model = {n: _clamp(i, grid.http_seqs, notes) for n, i in models.items()}
    for n, info in models.items():
        too_big = [b for b in grid.http_batches if info.server_max_batch and b > info.server_max_batch]
        if too_big:
            notes.append(
                f"{n}: http batch {', '.join(map(str, too_big))} skipped: the service takes "
                f"at most {info.server_max_batch} rows per request (H2H_MAX_BATCH_SIZE)"
            )
    loads = [("closed", c, None) for c in grid.concurrency] + [("open", 1, r) for r in grid.rates]
    points = []
    for load, c, r in loads:
        for q in sorted(set().union(*per_model.values())):
            for b in grid.http_batches:
                for n, info in models.items():
                    if q in per_model[n] and not (info.server_max_batch and b > info.server_max_batch):
                        points.append(Point("http", load, n, b, q, c, r))
    return points


def _inproc_on_gpu(s: LoadtestSettings) -> bool:
    """Whether in-process runs will find a GPU. Any failure to pick a provider (no onnxruntime
    build for this host, a broken CUDA install) means the CPU grid; the reason goes to the log."""
    try:
        return choose_providers(RuntimeConfig(provider=s.provider))[0][0] == "CUDAExecutionProvider"
    except Exception:
        log.warning("no GPU provider for in-process runs, using the CPU grid", exc_info=True)
        return False


# -- running ----------------------------------------------------------------------------


def _cells(p: Point, info: ModelInfo) -> dict[str, Any]:
    """The columns every row of `p` starts with: what was measured, on which model."""
    return {
        "mode": p.mode,
        "load": p.load,
        "model": p.model,
        "arch": info.arch,
        "layers": info.layers,
        "heads": info.heads,
        "batch": p.batch,
        "seq": p.seq,
        "concurrency": p.concurrency,
        "rate": p.rate,
    }


def _throughput(ok: int, window: float, p: Point) -> dict[str, float]:
    rps = ok / window if window > 0 else 0.0
    return {"rps": rps, "tokens_per_s": rps * p.batch * p.seq, "window_s": window}


class Runner:
    def __init__(self, plan: Plan, on_point: Callable[[int, Point, SweepRow], None] | None = None) -> None:
        self.plan = plan
        self.on_point = on_point or (lambda i, p, r: None)
        self.rows: list[SweepRow] = []
        self.meta = self._meta()
        self._inproc: dict[str, Any] = {}

    def _meta(self) -> ResultMeta:
        p, s = self.plan, self.plan.settings
        return results.run_meta(
            s,
            p.models,
            p.notes,
            nvml.gpu_names(),
            modes=p.modes,
            duration_s=p.duration,
            service={"url": s.url, "metadata": hc.server_metadata(s.url)} if "http" in p.modes else None,
        )

    def save(self) -> None:
        results.write(self.plan.settings.out, self.meta, self.rows)

    def run(self) -> list[SweepRow]:
        pts = self.plan.points
        inproc = [(i, p) for i, p in enumerate(pts) if p.mode == "inproc"]
        http = [(i, p) for i, p in enumerate(pts) if p.mode == "http"]
        for i, p in inproc:
            self._add(i, p, self._run_inproc(p))
        self._inproc.clear()  # free sessions before loading the service
        if http:
            with Driver(self.plan.settings.client_procs) as driver:
                for i, p in http:
                    self._add(i, p, self._run_http(p, driver))
        self.save()
        return self.rows

    def _add(self, i: int, p: Point, row: SweepRow) -> None:
        self.rows.append(row)
        self.save()
        self.on_point(i, p, row)

    # in-process
    def _run_inproc(self, p: Point) -> SweepRow:
        s, info = self.plan.settings, self.plan.models[p.model]
        m = self._inproc.get(p.model)
        if m is None:
            assert info.dir is not None
            m = self._inproc[p.model] = InprocModel(info.dir, provider=s.provider, variant=s.variant)
            self.meta.providers.setdefault("inproc", {})[p.model] = m.provider
        t = m.time_shape(
            p.batch,
            p.seq,
            repeats=s.repeats,
            budget_s=s.inproc_budget,
            seed=s.seed,
            blocks=s.inproc_blocks,
            clock=s.clock,
        )
        st = summarize(t.seconds)
        count = st.pop("count")
        spread = (  # the spread of the repeats: the lowest and highest block p50
            {
                "blocks": len(t.block_p50s),
                "p50_lo_ms": min(t.block_p50s) * 1e3,
                "p50_hi_ms": max(t.block_p50s) * 1e3,
            }
            if t.block_p50s
            else {}
        )
        return SweepRow(
            **_cells(p, info),
            provider=m.provider,
            variant=m.variant,
            requests=count,
            errors=0,
            note="; ".join(
                n
                for n, on in (
                    ("CUDA graph (H2H_CUDA_GRAPH)", m.model.graphs is not None),
                    ("CPU seconds", s.clock == "cpu"),
                )
                if on
            )
            or None,
            **st,
            **spread,
            # throughput of back-to-back runs: one batch per median latency
            **{**_throughput(1, st["p50_ms"] / 1e3, p), "window_s": sum(t.seconds)},
        )

    # over HTTP
    def _run_http(self, p: Point, driver: Driver) -> SweepRow:
        s, info = self.plan.settings, self.plan.models[p.model]
        self.meta.providers.setdefault("http", {})[p.model] = info.server_provider
        spec = LoadSpec(
            hc.predict_url(s.url, p.model),
            hc.predict_body(p.batch, p.seq, info.vocab_size, s.seed),
            "closed" if p.load == "closed" else "open",
            self.plan.duration,
            concurrency=p.concurrency,
            rate=p.rate,
            warmup=s.warmup,
            seed=s.seed + i_hash(p),
            timeout=s.timeout,
        )
        scraped: list[Any] = []
        res = driver.run(spec, lambda: scraped.append(promscrape.parse(hc.scrape_metrics(s.url), p.model)))
        after = promscrape.parse(hc.scrape_metrics(s.url), p.model)
        if res.ok == 0 and any(k in res.errors for k in ("ConnectError", "RemoteProtocolError")):
            raise hc.ServiceUnreachable(f"service at {s.url} stopped answering ({dict(res.errors)})")
        st = summarize(res.latencies)
        st.pop("count")
        sch = res.schedule
        open_loop = (
            {}
            if sch is None
            else {
                "late_sends": sch.late,
                "max_lag_ms": sch.max_lag_s * 1e3,
                "achieved_rate": sch.achieved_rate(self.plan.duration),
            }
        )
        return SweepRow(
            **_cells(p, info),
            provider=info.server_provider,
            variant=info.server_variant,
            requests=res.ok,
            errors=res.error_count,
            error_kinds=dict(res.errors),
            **st,
            **_throughput(res.ok, res.window_s, p),
            **client_row(res, driver.procs),
            **open_loop,
            **promscrape.diff(scraped[0], after),
        )


def client_row(res: hc.LoadResult, procs: int) -> dict[str, Any]:
    """The client's own cost, so a reader can tell when the load generator was the bottleneck."""
    us = res.client_cpu_us_per_request()
    return {
        "client_procs": procs,
        "client_cpu_us_per_req": None if us is None else round(us, 1),
        "client_cpu_cores": round(res.client_cpu_s / res.window_s, 4) if res.window_s > 0 else None,
    }


def i_hash(p: Point) -> int:
    return (p.batch * 7919 + p.seq * 104729 + int((p.rate or 0) * 10)) % 100_000


def run_plan(plan: Plan, on_point: Callable[[int, Point, SweepRow], None] | None = None) -> Runner:
    r = Runner(plan, on_point)
    t0 = time.perf_counter()
    r.run()
    r.meta.elapsed_s = round(time.perf_counter() - t0, 2)
    r.save()
    return r
