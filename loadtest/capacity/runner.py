"""`python -m loadtest capacity`: run the SLO capacity search against a running service.

Per model and request shape: a short closed-loop calibration (concurrency 1 gives the p50 a
lone request sees; concurrency 8 the rate the search starts from, half the closed-loop
throughput), then `capacity.search` with open-loop probes. Results go next to a sweep's, in
the same style: `capacity.json` (meta, one row per model and shape, every probe, the SHA/MHA
ratios) and `capacity.csv`, written atomically after every search.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from pydantic import Field

from loadtest import results
from loadtest.capacity.search import Probe, SearchResult, SearchSpec, judge, search
from loadtest.client import load as hc
from loadtest.client import promscrape
from loadtest.client.driver import Driver, LoadSpec
from loadtest.client.latency import summarize
from loadtest.models import ModelInfo, PlanError, resolve, service_models
from loadtest.results import CapacityRatio, CapacityResults, CapacityRow, ProbeRow, ResultMeta
from loadtest.settings import HttpLoadSettings
from loadtest.sweep.grid import GRID_HELP, GridError, parse_list, parse_names

log = logging.getLogger(__name__)


class CapacitySettings(HttpLoadSettings):
    """`python -m loadtest capacity`."""

    slo_p99_ms: float = Field(
        default=50.0, gt=0, le=600_000, description="p99 latency target in ms, from intended send times"
    )
    models: str = Field(default="mha,sha", description="comma list of served model names or mha/sha")
    batch: str = Field(default="1", description=f"rows per request: {GRID_HELP}")
    seq: str = Field(default="16,64", description=f"sequence lengths: {GRID_HELP}")
    max_error_rate: float = Field(
        default=0.001, ge=0, lt=1, description="largest error share a passing probe may have, 429s included"
    )
    probe_duration: float = Field(
        default=2.0, gt=0, le=120, description="seconds per probe, at least (longer at low rates)"
    )
    min_requests: int = Field(
        default=200,
        ge=1,
        description="a probe lasts long enough to send this many requests (up to 4x --probe-duration)",
    )
    max_probes: int = Field(default=8, ge=2, le=40, description="probes per model and shape")
    tolerance: float = Field(
        default=0.1, gt=0.005, le=1.0, description="stop bisecting when the bracket is this narrow"
    )
    start_rate: float | None = Field(
        default=None,
        gt=0,
        description="first rate in req/s (default: half the closed-loop rate at concurrency 8, "
        "measured just before the search)",
    )
    warmup: float = Field(default=0.2, ge=0, le=60, description="warm-up seconds before each probe")

    def spec(self, start_rate: float) -> SearchSpec:
        return SearchSpec(self.slo_p99_ms, self.max_error_rate, start_rate, self.max_probes, self.tolerance)

    def probe_seconds(self, rate: float) -> float:
        """At least `probe_duration`, longer at low rates so a p99 rests on `min_requests` samples
        (capped at 4x, so one probe never runs away)."""
        return min(max(self.probe_duration, self.min_requests / rate), 4 * self.probe_duration)


@dataclass
class Target:
    model: str
    batch: int
    seq: int

    def label(self) -> str:
        return f"{self.model} b={self.batch} s={self.seq}"


@dataclass
class CapacityPlan:
    settings: CapacitySettings
    models: dict[str, ModelInfo]
    targets: list[Target]
    notes: list[str] = field(default_factory=list)

    def estimate_s(self) -> float:
        s = self.settings
        per_probe = s.probe_duration * 1.3 + s.warmup + 0.3
        return len(self.targets) * (2.5 + 0.75 * s.max_probes * per_probe)


def plan(s: CapacitySettings) -> CapacityPlan:
    """Models from the running service, shapes from the flags; PlanError on anything unusable."""
    try:
        names = parse_names(s.models)
        batches, seqs = parse_list(s.batch), parse_list(s.seq)
    except GridError as exc:
        raise PlanError(str(exc)) from None
    hc.check_ready(s.url)
    served = service_models(s.url)
    models = {n: served[n] for n in resolve(names, served, f"service at {s.url}")}
    notes, targets = [], []
    for n, info in models.items():
        info.server_max_batch = int(hc.model_config(s.url, n).get("max_batch_size") or 0) or None
        for q in sorted({min(q, info.max_sequence_length) for q in seqs}):
            for b in batches:
                if info.server_max_batch and b > info.server_max_batch:
                    notes.append(
                        f"{n}: batch {b} skipped (the service takes at most {info.server_max_batch} rows)"
                    )
                    continue
                targets.append(Target(n, b, q))
        if any(q > info.max_sequence_length for q in seqs):
            notes.append(f"{n}: sequence lengths above {info.max_sequence_length} clamped to it")
    if not targets:
        raise PlanError("nothing to measure (every shape was skipped)")
    return CapacityPlan(s, models, targets, notes)


def wait_idle(url: str, model: str, timeout: float = 10.0) -> None:
    """Let the server finish what a probe left queued, so the next probe starts from idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if promscrape.inflight(hc.scrape_metrics(url), model) <= 0:
                return
        except (OSError, ValueError, hc.httpx.HTTPError) as exc:
            # metrics are a convenience here: never fail the search on them, but say so once
            log.warning("not waiting for %s to go idle: /metrics unreadable (%s)", model, exc)
            return
        time.sleep(0.05)


class CapacityRunner:
    """Runs every target's search, saving after each; `on_probe(target, probe)` reports progress."""

    def __init__(
        self,
        pl: CapacityPlan,
        on_probe: Callable[[Target, Probe], None] | None = None,
        on_search_done: Callable[[], None] | None = None,
    ) -> None:
        self.plan, self.s = pl, pl.settings
        self.on_probe = on_probe or (lambda t, p: None)
        self.on_search_done = on_search_done or (lambda: None)
        self.rows: list[CapacityRow] = []
        self.probes: list[ProbeRow] = []
        self.meta = self._meta()

    def _meta(self) -> ResultMeta:
        s, models = self.s, self.plan.models
        return results.run_meta(
            s,
            models,
            self.plan.notes,
            service={"url": s.url, "metadata": hc.server_metadata(s.url)},
            providers={"http": {n: i.server_provider for n, i in models.items()}},
            duration_s=s.probe_duration,
        )

    def run(self) -> list[CapacityRow]:
        t0 = time.perf_counter()
        with Driver(self.s.client_procs) as driver:
            for t in self.plan.targets:
                self.rows.append(self._search(driver, t))
                self.on_search_done()
                self.meta.elapsed_s = round(time.perf_counter() - t0, 2)
                self.save()
        return self.rows

    def save(self) -> None:
        data = CapacityResults(meta=self.meta, rows=self.rows, ratios=ratios(self.rows), probes=self.probes)
        results.write_capacity(self.s.out, data)

    def _body(self, t: Target) -> tuple[str, bytes]:
        info = self.plan.models[t.model]
        return hc.predict_url(self.s.url, t.model), hc.predict_body(
            t.batch, t.seq, info.vocab_size, self.s.seed
        )

    def _calibrate(self, driver: Driver, t: Target) -> tuple[float | None, float]:
        """p50 of lone requests (concurrency 1) and closed-loop requests/s at concurrency 8."""
        url, body = self._body(t)
        one = driver.run(
            LoadSpec(url, body, "closed", 1.0, concurrency=1, warmup=0.3, timeout=self.s.timeout)
        )
        eight = driver.run(
            LoadSpec(url, body, "closed", 1.0, concurrency=8, warmup=0.1, timeout=self.s.timeout)
        )
        if one.ok == 0 and any(k in one.errors for k in ("ConnectError", "RemoteProtocolError")):
            raise hc.ServiceUnreachable(f"service at {self.s.url} stopped answering ({dict(one.errors)})")
        return summarize(one.latencies)["p50_ms"], eight.ok / eight.window_s if eight.window_s else 0.0

    def _probe(self, driver: Driver, t: Target, spec: SearchSpec, rate: float) -> Probe:
        url, body = self._body(t)
        secs = self.s.probe_seconds(rate)
        drain = max(1.0, 4 * self.s.slo_p99_ms / 1e3)
        seed = self.s.seed + len(self.probes)
        load = LoadSpec(
            url,
            body,
            "open",
            secs,
            rate=rate,
            warmup=self.s.warmup,
            seed=seed,
            timeout=self.s.timeout,
            drain_s=drain,
        )
        res = driver.run(load)
        wait_idle(self.s.url, t.model)
        return judge(rate, res, spec, secs)

    def _search(self, driver: Driver, t: Target) -> CapacityRow:
        p50_c1, closed_rps = self._calibrate(driver, t)
        start = self.s.start_rate or max(1.0, 0.5 * closed_rps)
        spec = self.s.spec(start)

        def on_probe(p: Probe) -> None:
            self.probes.append(ProbeRow(model=t.model, batch=t.batch, seq=t.seq, **asdict(p)))
            self.on_probe(t, p)

        found = search(lambda r: self._probe(driver, t, spec, r), spec, on_probe)
        return self._row(t, found, p50_c1, closed_rps)

    def _row(self, t: Target, found: SearchResult, p50_c1: float | None, closed_rps: float) -> CapacityRow:
        info, best = self.plan.models[t.model], found.best
        return CapacityRow(
            model=t.model,
            arch=info.arch,
            layers=info.layers,
            heads=info.heads,
            batch=t.batch,
            seq=t.seq,
            slo_p99_ms=self.s.slo_p99_ms,
            max_error_rate=self.s.max_error_rate,
            capacity_rps=found.capacity_rps,
            capacity_rows_per_s=found.capacity_rps * t.batch,
            goodput_rps=best.goodput_rps if best else 0.0,
            p50_ms=best.p50_ms if best else None,
            p99_ms=best.p99_ms if best else None,
            error_rate=best.error_rate if best else None,
            p50_c1_ms=p50_c1,
            closed_c8_rps=closed_rps,
            probes=len(found.probes),
            failed_above_rps=found.failed_above.rate if found.failed_above else None,
            status=found.status,
            provider=info.server_provider,
            variant=info.server_variant,
            client_cpu_us_per_req=best.client_cpu_us_per_req if best else None,
            accuracy=info.manifest.get("test_accuracy"),
        )


def ratios(rows: list[CapacityRow]) -> list[CapacityRatio]:
    """SHA capacity / MHA capacity per shape, for the first model of each arch."""
    mha = next((r.model for r in rows if r.arch == "mha"), None)
    sha = next((r.model for r in rows if r.arch == "sha"), None)
    if mha is None or sha is None:
        return []
    cap = {(r.model, r.batch, r.seq): r.capacity_rps for r in rows}
    return [
        CapacityRatio(
            batch=b,
            seq=q,
            mha=mha,
            sha=sha,
            mha_rps=c_mha,
            sha_rps=c_sha,
            sha_over_mha=c_sha / c_mha if c_mha else None,
        )
        for (m, b, q), c_mha in cap.items()
        if m == mha and (c_sha := cap.get((sha, b, q))) is not None
    ]
