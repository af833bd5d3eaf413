"""Repeated, interleaved capacity searches and what their spread allows one to say.

One search lands on whatever the machine was doing in its few seconds: on a shared 2-core box a
busy second flips a pass into a fail and the capacity by 20-40%. So the searches are repeated in
rounds, the models interleaved (MHA, SHA, ceiling, then ceiling, SHA, MHA, ...: ABBA, so a
drift in the machine lands on both), and the rounds stop by a bounded stability rule in the
spirit of NVIDIA perf_analyzer's (repeat until consecutive measurements agree within a
percentage, at most so many tries; an unstable result is reported as such, not hidden).

A round's capacity is the highest passing rate, known only within its search bracket
[passing rate, lowest failing rate]. The SHA/MHA ratio of one paired round is therefore an
interval itself; the ratio's interval over the run is the union of the rounds' intervals: it
covers the search's resolution and the round-to-round noise, with no distribution assumed.
A ratio counts as beyond noise only when that interval excludes 1.

Pure (the measurement is a callable), so the rule is tested with a fake noisy server.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from contract.results import RatioInterval as Interval
from loadtest.capacity.search import SearchResult, SearchSpec


@dataclass(frozen=True)
class StabilityRule:
    """Rounds continue until the last `agree` rounds of every target agree within `within`
    (max / min <= 1 + within, for the capacity and the lone-request p50 alike), at least
    `min_rounds` (a ratio interval needs paired rounds) and at most `max_rounds`."""

    within: float = 0.1
    agree: int = 2
    min_rounds: int = 3
    max_rounds: int = 5

    def settled(self, values: Sequence[float | None]) -> bool:
        """Whether the last `agree` values agree (None values, unmeasured, never block it)."""
        tail = [v for v in values[-self.agree :] if v is not None]
        if len(values) < max(self.agree, self.min_rounds):
            return False
        if not tail or max(tail) <= 0:
            return True  # nothing measured, or no rate passed in any of them: nothing more to learn
        return min(tail) > 0 and max(tail) / min(tail) <= 1 + self.within


@dataclass(frozen=True)
class Round:
    """One target's search in one round."""

    capacity: float  # highest passing rate (0: none passed)
    failed_above: float | None  # lowest failing rate above it (None: every probe passed)
    p50_ms: float | None = None  # lone requests (concurrency 1) just before the search
    windows: int = 0  # probes (measurement windows) the search used

    @property
    def upper(self) -> float:
        """The highest the capacity can be, from this round's bracket (inf: no probe failed)."""
        return self.failed_above if self.failed_above is not None else math.inf


def next_spec(first: SearchSpec, last: SearchResult | None) -> SearchSpec:
    """The first round searches from `first`; a later one from the last capacity (or half the
    last failing rate), bracketing with a step of twice the tolerance: about three probes."""
    if last is None:
        return first
    start = last.capacity_rps or (last.failed_above.rate / 2 if last.failed_above else first.start_rate)
    return replace(first, start_rate=start, step=1 + 2 * first.tolerance)


def interleaved(
    targets: Sequence[str], measure: Callable[[str, int], Round], rule: StabilityRule
) -> dict[str, list[Round]]:
    """Every target measured once per round, the order reversed every other round, until `rule`
    says every target's capacity and p50 have settled (or `rule.max_rounds`)."""
    got: dict[str, list[Round]] = {t: [] for t in targets}
    for r in range(rule.max_rounds):
        for t in targets if r % 2 == 0 else list(reversed(targets)):
            got[t].append(measure(t, r))
        if settled(got, rule):
            break
    return got


def settled(got: dict[str, list[Round]], rule: StabilityRule) -> bool:
    return all(
        rule.settled([x.capacity for x in rs]) and rule.settled([x.p50_ms for x in rs]) for rs in got.values()
    )


@dataclass(frozen=True)
class Spread:
    """A value over rounds: the median, the lowest and highest, and how many rounds."""

    value: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread | None:
        vs = [v for v in values if v is not None]
        if not vs:
            return None
        return cls(statistics.median(vs), min(vs), max(vs), len(vs))


def capacity_ratio(num: Sequence[Round], den: Sequence[Round], margin: float = 0.0) -> Interval | None:
    """num / den capacity over paired rounds: the median of the rounds' ratios, and the union of
    each round's bracket interval [num pass / den fail, num fail / den pass]; beyond noise only
    past `margin`. None when no round has a passing rate for both."""
    pairs = [(a, b) for a, b in zip(num, den, strict=False) if a.capacity > 0 and b.capacity > 0]
    if not pairs:
        return None
    mids = [a.capacity / b.capacity for a, b in pairs]
    lo = min(a.capacity / b.upper for a, b in pairs)
    hi = max(a.upper / b.capacity for a, b in pairs)
    return Interval(statistics.median(mids), lo, hi, len(pairs), margin)


def value_ratio(num: Sequence[float | None], den: Sequence[float | None]) -> Interval | None:
    """num / den of a value measured once per paired round (the p50): the median and the range
    of the rounds' ratios."""
    rs = [a / b for a, b in zip(num, den, strict=False) if a is not None and b]
    if not rs:
        return None
    return Interval(statistics.median(rs), min(rs), max(rs), len(rs))


def near_ceiling(model: Sequence[Round], ceiling: Sequence[Round], within: float) -> bool:
    """Whether a model's capacity is within the noise of the service's own ceiling: its highest
    possible capacity (bracket top, widened by `within`) reaches the ceiling's lowest round."""
    caps = [r.capacity for r in ceiling if r.capacity > 0]
    if not caps or not model:
        return False
    top = max(min(r.upper, r.capacity * (1 + within)) for r in model)
    return top * (1 + within) >= min(caps)
