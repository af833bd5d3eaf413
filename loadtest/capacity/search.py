"""Capacity under a latency SLO: the highest open-loop arrival rate a model sustains.

A probe offers Poisson arrivals at one rate for a few seconds and passes when the p99 latency
(measured from each request's intended send time, so a backlog shows) is within the SLO and
the error share (429s, timeouts, unfinished requests included) is within the limit. The search
is bounded: coarse doubling (or halving) from a start rate until one rate passes and a higher
one fails, then bisection (geometric midpoints: rates span orders of magnitude) until the
bracket is within `tolerance` or the probe budget is spent. The capacity is the highest rate
that passed. This is the question NVIDIA's Model Analyzer answers for Triton configurations,
asked of two architectures side by side.

This module is pure (the probe is a callable), so the search is tested with a fake server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from contract.results import summarize
from loadtest.client.load import LoadResult


@dataclass
class Probe:
    """One probe's outcome at one offered rate."""

    rate: float
    passed: bool
    reason: str  # "ok" or what failed, in words
    p50_ms: float | None = None
    p99_ms: float | None = None
    ok: int = 0
    errors: int = 0
    error_rate: float = 0.0
    goodput_rps: float = 0.0  # successful requests per second over the probe window
    late_sends: int = 0
    duration_s: float = 0.0
    client_cpu_us_per_req: float | None = None
    error_kinds: dict[str, int] = field(default_factory=dict)
    windows: int = 1  # measurement windows behind the verdict (`steady` repeats them)
    passes: int | None = None  # of those windows, how many passed (None: one window)


@dataclass(frozen=True)
class SearchSpec:
    slo_p99_ms: float
    max_error_rate: float = 0.001
    start_rate: float = 10.0
    max_probes: int = 8
    tolerance: float = 0.1  # stop when the failing rate is within 10% of the passing one
    min_rate: float = 0.1
    max_rate: float = 1e6
    step: float = 2.0  # the bracketing factor (a later round starts at the last capacity with a finer one)


@dataclass
class SearchResult:
    capacity_rps: float  # highest passing rate (0 when none passed)
    status: str  # bracketed | probe budget spent | SLO missed at the lowest rate | max rate passed
    best: Probe | None  # the probe at the capacity
    failed_above: Probe | None  # the lowest failing rate above it
    probes: list[Probe]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(rate: float, res: LoadResult, spec: SearchSpec, duration: float) -> Probe:
    """Pass/fail for one open-loop window (latencies of successful requests, every error counted)."""
    st = summarize(res.latencies)
    total = res.ok + res.error_count
    err_rate = res.error_count / total if total else 0.0
    p99 = st["p99_ms"]
    if res.ok == 0:
        reason = "no successful request"
    elif err_rate > spec.max_error_rate:
        reason = f"errors {err_rate:.2%} > {spec.max_error_rate:.2%}"
    elif p99 is not None and p99 > spec.slo_p99_ms:
        reason = f"p99 {p99:.1f} ms > {spec.slo_p99_ms:g} ms"
    else:
        reason = "ok"
    return Probe(
        rate=rate,
        passed=reason == "ok",
        reason=reason,
        p50_ms=st["p50_ms"],
        p99_ms=p99,
        ok=res.ok,
        errors=res.error_count,
        error_rate=err_rate,
        goodput_rps=res.ok / res.window_s if res.window_s else 0.0,
        late_sends=res.schedule.late if res.schedule else 0,
        duration_s=duration,
        client_cpu_us_per_req=res.client_cpu_us_per_request(),
        error_kinds=dict(res.errors),
    )


def steady(window: Callable[[float], Probe], agree: int = 2, most: int = 3) -> Callable[[float], Probe]:
    """A probe that repeats its window at the same rate until `agree` consecutive windows agree
    (pass or fail), at most `most` windows, then takes the majority: one busy second no longer
    decides a rate (perf_analyzer's stability idea, applied to a pass/fail). The last window's
    figures are reported, with the window and pass counts."""

    def probe(rate: float) -> Probe:
        seen: list[Probe] = []
        while len(seen) < most:
            seen.append(window(rate))
            tail = [p.passed for p in seen[-agree:]]
            if len(tail) == agree and len(set(tail)) == 1:
                break
        passes = sum(p.passed for p in seen)
        verdict = passes * 2 > len(seen) if len(seen) == most else seen[-1].passed
        last = seen[-1]
        if verdict != last.passed:
            last = next(p for p in reversed(seen) if p.passed == verdict)
        return replace(last, windows=len(seen), passes=passes)

    return probe


def search(
    probe: Callable[[float], Probe], spec: SearchSpec, on_probe: Callable[[Probe], None] | None = None
) -> SearchResult:
    """Bracket by multiplying or dividing by `spec.step` (2: doubling) from `spec.start_rate`, then
    bisect; at most `max_probes` probes."""
    probes: list[Probe] = []
    lo: Probe | None = None
    hi: Probe | None = None

    def run(rate: float) -> Probe:
        p = probe(rate)
        probes.append(p)
        if on_probe is not None:
            on_probe(p)
        return p

    rate = min(max(spec.start_rate, spec.min_rate), spec.max_rate)
    status = "probe budget spent"
    while len(probes) < spec.max_probes:  # bracket
        p = run(rate)
        if p.passed:
            lo = p
            if hi is not None:
                break
            if rate >= spec.max_rate:
                status = "max rate passed"
                break
            rate = min(rate * spec.step, spec.max_rate)
        else:
            hi = p
            if lo is not None:
                break
            if rate / spec.step < spec.min_rate:
                status = "SLO missed at the lowest rate"
                break
            rate /= spec.step
    while lo is not None and hi is not None and len(probes) < spec.max_probes:  # bisect
        if hi.rate / lo.rate <= 1 + spec.tolerance:
            break
        p = run(math.sqrt(lo.rate * hi.rate))
        if p.passed:
            lo = p
        else:
            hi = p
    if lo is not None and hi is not None and hi.rate / lo.rate <= 1 + spec.tolerance:
        status = "bracketed"
    return SearchResult(lo.rate if lo else 0.0, status, lo, hi, probes)
