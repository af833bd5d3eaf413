"""`python -m loadtest capacity`: run the SLO capacity search against a running service.

Per request shape, the models (and, with --ceiling-url, a service started with --null-engine:
the service's own ceiling with no model) are searched in interleaved rounds
(`capacity.rounds`): each round measures every target's lone-request p50 (concurrency 1) and
runs `capacity.search` with open-loop probes, the first round from half the closed-loop rate at
concurrency 8, later rounds from the last capacity with a finer step. Rounds stop when the last
ones agree (the stability rule) or at --max-rounds. Results go next to a sweep's, in the same
style: `capacity.json` (meta, one row per model and shape with its range over rounds, every
round and probe, the SHA/MHA ratios with their intervals, the ceiling) and `capacity.csv`,
written atomically after every shape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from pydantic import Field

from contract import results
from contract.results import (
    CapacityRatio,
    CapacityResults,
    CapacityRow,
    ProbeRow,
    ResultMeta,
    RoundRow,
    summarize,
)
from loadtest.capacity.rounds import (
    Round,
    Spread,
    StabilityRule,
    capacity_ratio,
    interleaved,
    near_ceiling,
    next_spec,
    value_ratio,
)
from loadtest.capacity.search import Probe, SearchResult, SearchSpec, judge, search, steady
from loadtest.client import load as hc
from loadtest.client import promscrape
from loadtest.client.driver import Driver, LoadSpec
from loadtest.models import ModelInfo, PlanError, resolve, service_models
from loadtest.settings import HttpLoadSettings
from loadtest.sweep.grid import GRID_HELP, GridError, parse_list, parse_names
from service.runtime import nvml

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
    ceiling_url: str | None = Field(
        default=None,
        description="a service started with --null-engine serving the same models: its capacity, searched in "
        "the same rounds, is the ceiling the service itself sets (each model's capacity is shown as a share of it)",
    )
    windows: int = Field(
        default=3,
        ge=1,
        le=9,
        description="most windows per probed rate: repeated until two in a row agree (pass or fail), "
        "else the majority decides (1: one window)",
    )
    min_rounds: int = Field(default=3, ge=1, le=20, description="interleaved rounds at least (paired rounds)")
    max_rounds: int = Field(default=5, ge=1, le=20, description="interleaved rounds at most")
    stability: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="rounds stop once the last --agree rounds of every model agree within this share "
        "(capacity and lone-request p50)",
    )
    agree: int = Field(default=2, ge=2, le=10, description="consecutive rounds that must agree")
    p50_window: float = Field(
        default=0.5, gt=0, le=60, description="seconds of lone requests (concurrency 1) per model and round"
    )

    def spec(self, start_rate: float) -> SearchSpec:
        return SearchSpec(self.slo_p99_ms, self.max_error_rate, start_rate, self.max_probes, self.tolerance)

    def rule(self) -> StabilityRule:
        return StabilityRule(
            self.stability, self.agree, self.min_rounds, max(self.min_rounds, self.max_rounds)
        )

    def probe_seconds(self, rate: float) -> float:
        """At least `probe_duration`, longer at low rates so a p99 rests on `min_requests` samples
        (capped at 4x, so one probe never runs away)."""
        return min(max(self.probe_duration, self.min_requests / rate), 4 * self.probe_duration)


CEILING = "service ceiling (null engine)"


@dataclass
class Target:
    model: str
    batch: int
    seq: int
    ceiling: bool = False  # the null-engine service (--ceiling-url), asked for `model`'s route

    def label(self) -> str:
        return f"{CEILING if self.ceiling else self.model} b={self.batch} s={self.seq}"

    @property
    def key(self) -> str:
        return CEILING if self.ceiling else self.model


@dataclass
class CapacityPlan:
    settings: CapacitySettings
    models: dict[str, ModelInfo]
    targets: list[Target]
    notes: list[str] = field(default_factory=list)

    def estimate_s(self) -> float:
        """At most: the first round's full searches, then later rounds of about three probes."""
        s = self.settings
        per_window = s.probe_duration * 1.3 + s.warmup + 0.3
        per_probe = per_window * min(s.windows, 2.5)  # two windows when they agree, three when not
        targets = len(self.targets) + (len(self.shapes()) if s.ceiling_url else 0)
        later = max(s.min_rounds, s.max_rounds) - 1
        return targets * (
            2.5 + 0.75 * s.max_probes * per_probe + later * (s.p50_window + 0.5 + 3 * per_probe)
        )

    def shapes(self) -> list[tuple[int, int]]:
        return sorted({(t.batch, t.seq) for t in self.targets})


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
    """Runs every shape's interleaved rounds, saving after each shape; `on_probe(target, probe)`
    reports progress, `on_search_done()` after each search."""

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
        self.ceiling: list[CapacityRow] = []
        self.rounds: list[RoundRow] = []
        self.probes: list[ProbeRow] = []
        self.windows = 0  # measurement windows so far (each gets its own arrival schedule)
        self.meta = self._meta()

    def _meta(self) -> ResultMeta:
        s, models = self.s, self.plan.models
        meta = results.run_meta(
            s,
            models,
            self.plan.notes,
            nvml.gpu_names(),
            service={"url": s.url, "metadata": hc.server_metadata(s.url)},
            providers={"http": {n: i.server_provider for n, i in models.items()}},
            duration_s=s.probe_duration,
        )
        if s.ceiling_url and meta.service is not None:
            meta.service["ceiling_url"] = s.ceiling_url
        return meta

    def run(self) -> list[CapacityRow]:
        t0 = time.perf_counter()
        with Driver(self.s.client_procs) as driver:
            for b, q in self.plan.shapes():
                targets = [t for t in self.plan.targets if (t.batch, t.seq) == (b, q)]
                if self.s.ceiling_url:
                    targets.append(Target(targets[0].model, b, q, ceiling=True))
                self._shape(driver, targets)
                self.meta.elapsed_s = round(time.perf_counter() - t0, 2)
                self.save()
        return self.rows

    def save(self) -> None:
        data = CapacityResults(
            meta=self.meta,
            rows=self.rows,
            ratios=ratios(self.rows, self.rounds),
            probes=self.probes,
            rounds=self.rounds,
            ceiling=self.ceiling,
        )
        results.write_capacity(self.s.out, data)

    def _url(self, t: Target) -> str:
        return (self.s.ceiling_url if t.ceiling else None) or self.s.url

    def _body(self, t: Target) -> tuple[str, bytes]:
        info = self.plan.models[t.model]
        return hc.predict_url(self._url(t), t.model), hc.predict_body(
            t.batch, t.seq, info.vocab_size, self.s.seed
        )

    def _closed(
        self, driver: Driver, t: Target, concurrency: int, secs: float, warmup: float
    ) -> hc.LoadResult:
        url, body = self._body(t)
        res = driver.run(
            LoadSpec(
                url, body, "closed", secs, concurrency=concurrency, warmup=warmup, timeout=self.s.timeout
            )
        )
        if res.ok == 0 and any(k in res.errors for k in ("ConnectError", "RemoteProtocolError")):
            raise hc.ServiceUnreachable(f"service at {self._url(t)} stopped answering ({dict(res.errors)})")
        return res

    def _probe(self, driver: Driver, t: Target, spec: SearchSpec, rate: float) -> Probe:
        url, body = self._body(t)
        secs = self.s.probe_seconds(rate)
        drain = max(1.0, 4 * self.s.slo_p99_ms / 1e3)
        self.windows += 1
        seed = self.s.seed + self.windows
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
        wait_idle(self._url(t), t.model)
        return judge(rate, res, spec, secs)

    def _shape(self, driver: Driver, targets: list[Target]) -> None:
        """Interleaved rounds over one shape's targets, then a row per model (and the ceiling's)."""
        by_key = {t.key: t for t in targets}
        found: dict[str, list[SearchResult]] = {k: [] for k in by_key}
        closed: dict[str, float] = {}

        def measure(key: str, r: int) -> Round:
            t = by_key[key]
            p50 = summarize(self._closed(driver, t, 1, self.s.p50_window, 0.3 if r == 0 else 0.1).latencies)
            if r == 0:
                res = self._closed(driver, t, 8, 1.0, 0.1)
                closed[key] = res.ok / res.window_s if res.window_s else 0.0
            first = self.s.spec(self.s.start_rate or max(1.0, 0.5 * closed[key]))
            spec = next_spec(first, found[key][-1] if found[key] else None)
            res_ = self._search(driver, t, spec, r)
            found[key].append(res_)
            got = Round(
                res_.capacity_rps,
                res_.failed_above.rate if res_.failed_above else None,
                p50["p50_ms"],
                sum(p.windows for p in res_.probes),
            )
            self.rounds.append(
                RoundRow(
                    model=t.key,
                    batch=t.batch,
                    seq=t.seq,
                    round=r,
                    capacity_rps=got.capacity,
                    failed_above_rps=got.failed_above,
                    p50_c1_ms=got.p50_ms,
                    windows=got.windows,
                )
            )
            return got

        got = interleaved(list(by_key), measure, self.s.rule())
        ceiling = got.get(CEILING) if self.s.ceiling_url else None
        for key, t in by_key.items():
            row = self._row(t, got[key], found[key], closed[key], ceiling)
            (self.ceiling if t.ceiling else self.rows).append(row)

    def _search(self, driver: Driver, t: Target, spec: SearchSpec, r: int) -> SearchResult:
        def on_probe(p: Probe) -> None:
            self.probes.append(ProbeRow(model=t.key, batch=t.batch, seq=t.seq, round=r, **asdict(p)))
            self.on_probe(t, p)

        window = lambda rate: self._probe(driver, t, spec, rate)  # noqa: E731
        found = search(steady(window, most=self.s.windows) if self.s.windows > 1 else window, spec, on_probe)
        self.on_search_done()
        return found

    def _row(
        self,
        t: Target,
        rounds: list[Round],
        found: list[SearchResult],
        closed_rps: float,
        ceiling: list[Round] | None,
    ) -> CapacityRow:
        """The median round's search, with the range over rounds beside it."""
        info = self.plan.models[t.model]
        order = sorted(range(len(rounds)), key=lambda i: rounds[i].capacity)
        mid = found[order[(len(order) - 1) // 2]]
        best = mid.best
        cap, p50 = Spread.of([r.capacity for r in rounds]), Spread.of([r.p50_ms for r in rounds])
        rule = self.s.rule()
        ceil = Spread.of([r.capacity for r in ceiling]) if ceiling and not t.ceiling else None
        capacity = cap.value if cap else 0.0
        return CapacityRow(
            model=CEILING if t.ceiling else t.model,
            arch="none" if t.ceiling else info.arch,
            layers=0 if t.ceiling else info.layers,
            heads=0 if t.ceiling else info.heads,
            batch=t.batch,
            seq=t.seq,
            slo_p99_ms=self.s.slo_p99_ms,
            max_error_rate=self.s.max_error_rate,
            capacity_rps=capacity,
            capacity_rows_per_s=capacity * t.batch,
            goodput_rps=best.goodput_rps if best else 0.0,
            p50_ms=best.p50_ms if best else None,
            p99_ms=best.p99_ms if best else None,
            error_rate=best.error_rate if best else None,
            p50_c1_ms=p50.value if p50 else None,
            closed_c8_rps=closed_rps,
            probes=sum(r.windows for r in rounds),
            failed_above_rps=mid.failed_above.rate if mid.failed_above else None,
            status=mid.status,
            provider=None if t.ceiling else info.server_provider,
            variant="null engine" if t.ceiling else info.server_variant,
            client_cpu_us_per_req=best.client_cpu_us_per_req if best else None,
            accuracy=None if t.ceiling else info.manifest.get("test_accuracy"),
            rounds=len(rounds),
            capacity_lo_rps=cap.lo if cap else None,
            capacity_hi_rps=cap.hi if cap else None,
            stable=rule.settled([r.capacity for r in rounds]) and rule.settled([r.p50_ms for r in rounds]),
            p50_c1_lo_ms=p50.lo if p50 else None,
            p50_c1_hi_ms=p50.hi if p50 else None,
            ceiling_rps=ceil.value if ceil else None,
            ceiling_share=capacity / ceil.value if ceil and ceil.value else None,
            set_by_service=near_ceiling(rounds, ceiling, rule.within) if ceiling and not t.ceiling else None,
        )


def as_rounds(rows: list[RoundRow], model: str, batch: int, seq: int) -> list[Round]:
    """One model's rounds at one shape, in round order."""
    mine = sorted(
        (r for r in rows if (r.model, r.batch, r.seq) == (model, batch, seq)), key=lambda r: r.round
    )
    return [Round(r.capacity_rps, r.failed_above_rps, r.p50_c1_ms, r.windows) for r in mine]


def ratios(rows: list[CapacityRow], rounds: list[RoundRow] | None = None) -> list[CapacityRatio]:
    """SHA capacity / MHA capacity per shape, for the first model of each arch: the medians'
    ratio, and with the rounds, the interval over paired rounds and the lone-request p50's."""
    mha = next((r.model for r in rows if r.arch == "mha"), None)
    sha = next((r.model for r in rows if r.arch == "sha"), None)
    if mha is None or sha is None:
        return []
    cap = {(r.model, r.batch, r.seq): r.capacity_rps for r in rows}
    out = []
    for (m, b, q), c_mha in cap.items():
        if m != mha or (c_sha := cap.get((sha, b, q))) is None:
            continue
        a, z = as_rounds(rounds or [], sha, b, q), as_rounds(rounds or [], mha, b, q)
        iv = capacity_ratio(a, z)
        p50 = value_ratio([r.p50_ms for r in a], [r.p50_ms for r in z])
        out.append(
            CapacityRatio(
                batch=b,
                seq=q,
                mha=mha,
                sha=sha,
                mha_rps=c_mha,
                sha_rps=c_sha,
                sha_over_mha=iv.value if iv else (c_sha / c_mha if c_mha else None),
                sha_over_mha_lo=iv.lo if iv else None,
                sha_over_mha_hi=None if iv is None or iv.hi == float("inf") else iv.hi,
                rounds=iv.n if iv else 1,
                p50_sha_over_mha=p50.value if p50 else None,
                p50_sha_over_mha_lo=p50.lo if p50 else None,
                p50_sha_over_mha_hi=p50.hi if p50 else None,
            )
        )
    return out
