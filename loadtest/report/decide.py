"""Which model to serve: one rule, used by `make demo`, the load report and the GPU report.

The sentence names a model only on a signal that differs beyond its noise, and says which
signal decided and by how much:

1. capacity under the SLO, when the SHA/MHA interval over paired rounds clears parity by more
   than the search's resolution (its --tolerance, 10%: a smaller gap is not called) (and does
   not contradict the in-process cost: a deeper model carrying more traffic while its own
   in-process p50 is higher beyond noise is a busy second, not a finding);
2. otherwise model cost, the in-process SHA/MHA p50 at the same shape, when its block range
   excludes 1;
3. otherwise accuracy: the seeded study's SHA − MHA (docs/accuracy.json) when it covers the
   served variants, else the served models' own test-set gap, when its 95% interval excludes 0;
4. otherwise "either; no difference beyond noise", with what would settle it.

A model chosen on capacity or cost that is less accurate beyond noise is a trade-off, said as
such. When a model's capacity is within the noise of the service's own ceiling (the null
engine), the sentence says capacity there is set by the service, not by the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from contract.results import CapacityResults, CapacityRow, SweepRow
from contract.results import RatioInterval as Interval
from loadtest.report import analysis
from loadtest.report.choose import Candidate, accuracy_gap, candidates, headline_shape
from loadtest.report.study import Study

DEFAULT_MARGIN = 0.1  # capacity differences within the search's resolution (its tolerance) are not called


@dataclass(frozen=True)
class Cost:
    """In-process SHA/MHA p50 at one shape; lo/hi from the block p50s' ranges (None: one block)."""

    batch: int
    seq: int
    ratio: float
    lo: float | None
    hi: float | None

    @property
    def beyond_noise(self) -> bool:
        return self.lo is not None and self.hi is not None and (self.lo > 1.0 or self.hi < 1.0)

    def words(self) -> str:
        blocks = (
            f", blocks {self.lo:.2f}-{self.hi:.2f}x" if self.lo is not None and self.hi is not None else ""
        )
        return (
            f"SHA's in-process p50 is {self.ratio:.2f}x MHA's at batch {self.batch} x seq {self.seq}{blocks}"
        )


def model_costs(points: list[SweepRow]) -> dict[tuple[int, int], Cost]:
    """SHA/MHA in-process p50 per shape, with the interval the block ranges give."""
    rows = [p for p in points if p.mode == "inproc" and p.p50_ms]
    mha, sha = analysis.pair(rows)
    by = {(p.model, p.batch, p.seq): p for p in rows}
    out = {}
    for (m, b, q), a in by.items():
        z = by.get((sha, b, q)) if m == mha else None
        if z is None or not a.p50_ms or not z.p50_ms:
            continue
        lo = hi = None
        if (a.blocks or 1) > 1 and (z.blocks or 1) > 1 and a.p50_lo_ms and a.p50_hi_ms and z.p50_lo_ms:
            lo, hi = z.p50_lo_ms / a.p50_hi_ms, (z.p50_hi_ms or z.p50_ms) / a.p50_lo_ms
        out[(b, q)] = Cost(b, q, z.p50_ms / a.p50_ms, lo, hi)
    return out


@dataclass(frozen=True)
class Accuracy:
    """The accuracy signal: which architecture is ahead, in words, and whether beyond noise."""

    ahead: str  # "mha" or "sha"
    words: str
    beyond_noise: bool


def accuracy_signal(mha: Candidate, sha: Candidate, study: Study | None) -> Accuracy | None:
    """The seeded study's SHA − MHA when it studied both served variants at their size (norm,
    layers and heads alike), else the served pair's own test-set gap."""
    if study and study.claim and _studied(study, mha) and _studied(study, sha):
        c, iv = study.claim, study.claim.interval
        return Accuracy(
            "sha" if c.diff > 0 else "mha",
            f"seeded study, {c.mha.epochs} and {c.sha.epochs} epochs, {len(c.mha.runs)} and {len(c.sha.runs)} "
            f"seeds: {c.words()}",
            iv is not None and (iv.low > 0 or iv.high < 0),
        )
    gap = accuracy_gap(mha, sha)
    if gap is None:
        return None
    return Accuracy(gap.better.arch, gap.words(), gap.beyond_noise)


def _studied(study: Study, c: Candidate) -> bool:
    side = study.sides.get(f"{c.arch}-{c.norm}")
    run = side.runs[0] if side and side.runs else {}
    return bool(run) and (run.get("layers"), run.get("heads")) == (c.layers, c.heads)


@dataclass(frozen=True)
class Verdict:
    model: str | None  # the model to serve (None: either)
    signal: str  # capacity | model cost | accuracy | none | (an edge case's name)
    sentence: str


def capacity_interval(cap: CapacityResults, shape: tuple[int, int]) -> Interval | None:
    x = next((r for r in cap.ratios if (r.batch, r.seq) == shape), None)
    if x is None or x.sha_over_mha is None:
        return None
    lo = x.sha_over_mha_lo if x.sha_over_mha_lo is not None else x.sha_over_mha
    hi = x.sha_over_mha_hi if x.sha_over_mha_hi is not None else math.inf
    margin = float(cap.meta.settings.get("tolerance") or DEFAULT_MARGIN)
    return Interval(x.sha_over_mha, lo, hi, x.rounds if x.sha_over_mha_lo is not None else 1, margin)


def _cap(c: Candidate, row: CapacityRow | None, shape: tuple[int, int]) -> str:
    rng = ""
    if row is not None and row.capacity_lo_rps is not None and row.capacity_hi_rps is not None:
        rng = f" [{row.capacity_lo_rps:,.0f}-{row.capacity_hi_rps:,.0f}]"
    return f"{c.model} {c.capacity[shape]:,.0f} req/s{rng}"


def ceiling_words(rows: list[CapacityRow], shape: tuple[int, int]) -> str:
    """'; capacity here is set by the service, not by the model (mha-small at 94%, ...)' or the shares."""
    at = [r for r in rows if (r.batch, r.seq) == shape and r.ceiling_share is not None]
    if not at:
        return ""
    shares = ", ".join(f"{r.model} at {r.ceiling_share:.0%}" for r in at)
    of = f"of the service's own ceiling with no model ({at[0].ceiling_rps:,.0f} req/s)"
    bound = [r.model for r in at if r.set_by_service]
    if bound:
        who = "both" if len(bound) == len(at) > 1 else " and ".join(bound)
        return f"; capacity here is set by the service, not by the model, for {who} ({shares} {of})"
    return f" ({shares} {of})"


def decide(
    cap: CapacityResults, points: list[SweepRow], manifests: dict[str, Any], study: Study | None = None
) -> Verdict | None:
    """The verdict at the headline shape (smallest batch, then sequence); None with no capacity row."""
    shape = headline_shape(cap.rows)
    if shape is None:
        return None
    cands = [c for c in candidates(cap.rows, points, manifests) if shape in c.capacity]
    b, q = shape
    slo = cap.rows[0].slo_p99_ms
    mha = next((c for c in cands if c.arch == "mha"), None)
    sha = next((c for c in cands if c.arch == "sha"), None)
    if mha is None or sha is None:
        return Verdict(
            None, "one model", "Only one model was measured, so there is nothing to choose between."
        )
    if max(mha.capacity[shape], sha.capacity[shape]) <= 0:
        return Verdict(
            None,
            "SLO missed",
            f"No model meets p99 <= {slo:g} ms at batch {b} x seq {q} at any rate tried; relax the SLO or add replicas.",
        )
    v = _misses(mha, sha, shape, slo) or _rule(Evidence(cap, points, mha, sha, shape, slo, study))
    bounds = [c.model for c in (mha, sha) if shape in c.lower_bound]
    if bounds:
        v = Verdict(
            v.model,
            v.signal,
            v.sentence
            + f" ({' and '.join(bounds)}: lower bound{'s' if len(bounds) > 1 else ''}, every probe "
            "passed; raise --max-probes for the limit.)",
        )
    return v


def _misses(mha: Candidate, sha: Candidate, shape: tuple[int, int], slo: float) -> Verdict | None:
    """One model meets the SLO at no rate tried (its median round), the other does: capacity decides."""
    ok = [c for c in (mha, sha) if c.capacity[shape] > 0]
    if len(ok) != 1:
        return None
    win, lose = ok[0], (sha if ok[0] is mha else mha)
    b, q = shape
    return Verdict(
        win.model,
        "capacity",
        f"Serve {win.model}, decided by capacity: {lose.model} misses p99 <= {slo:g} ms at batch {b} x seq {q} "
        f"at every rate tried, while {win.model} carries {win.capacity[shape]:,.0f} req/s.",
    )


@dataclass(frozen=True)
class Evidence:
    cap: CapacityResults
    points: list[SweepRow]
    mha: Candidate
    sha: Candidate
    shape: tuple[int, int]
    slo: float
    study: Study | None

    def by_arch(self, arch: str) -> Candidate:
        return self.mha if arch == "mha" else self.sha

    def capacity_words(self, iv: Interval | None) -> str:
        b, q = self.shape
        rows = {r.model: r for r in self.cap.rows if (r.batch, r.seq) == self.shape}
        caps = f"{_cap(self.mha, rows.get(self.mha.model), self.shape)} vs {_cap(self.sha, rows.get(self.sha.model), self.shape)}"
        ratio = f"SHA/MHA {iv.words()}" if iv else "no SHA/MHA ratio"
        return f"within p99 <= {self.slo:g} ms at batch {b} x seq {q}: {ratio}; {caps}" + ceiling_words(
            list(rows.values()), self.shape
        )


def _rule(e: Evidence) -> Verdict:
    iv = capacity_interval(e.cap, e.shape)
    costs = model_costs(e.points)
    cost = costs.get(e.shape)
    acc = accuracy_signal(e.mha, e.sha, e.study)
    cap_more = None if iv is None or not iv.beyond_noise else ("sha" if iv.lo > 1 else "mha")
    cost_cheaper = None if cost is None or not cost.beyond_noise else ("sha" if cost.hi < 1 else "mha")  # type: ignore[operator]
    contradicted = cap_more is not None and cost_cheaper is not None and cap_more != cost_cheaper
    cap_text = e.capacity_words(iv)
    cost_text = _cost_words(cost, costs)
    acc_text = acc.words if acc else "no test accuracy recorded"
    if cap_more and not contradicted:
        win, lose = e.by_arch(cap_more), e.by_arch("sha" if cap_more == "mha" else "mha")
        times = 1 / iv.value if cap_more == "mha" else iv.value  # type: ignore[union-attr]
        head = f"it carries {times:.2f}x the traffic of {lose.model} {cap_text}"
        return _with_accuracy(win, lose, "capacity", head, acc, acc_text)
    if contradicted:
        cap_text += "; the gap contradicts the in-process cost, so it is taken as noise"
    if cost_cheaper:
        win, lose = e.by_arch(cost_cheaper), e.by_arch("sha" if cost_cheaper == "mha" else "mha")
        head = f"the capacities do not differ beyond noise ({cap_text}), and {cost_text}"
        return _with_accuracy(win, lose, "model cost", head, acc, acc_text)
    if acc and acc.beyond_noise:
        win = e.by_arch(acc.ahead)
        return Verdict(
            win.model,
            "accuracy",
            f"Serve {win.model}, decided by accuracy: it is more accurate beyond noise ({acc_text}), while "
            f"the capacities ({cap_text}) and the model cost ({cost_text}) do not differ beyond noise.",
        )
    settle = []
    if not (iv and iv.beyond_noise):
        settle.append("longer probes or more rounds (--probe-duration, --max-rounds) on a quieter machine")
    if not (cost and cost.beyond_noise):
        settle.append("more in-process blocks (--inproc-blocks)")
    if not (acc and acc.beyond_noise):
        settle.append("more seeds in the seeded study (python -m models.ablation --seeds)")
    return Verdict(
        None,
        "none",
        f"Either: no difference beyond noise in capacity ({cap_text}), model cost ({cost_text}) or accuracy "
        f"({acc_text}). What would settle it: {'; '.join(settle)}.",
    )


def _cost_words(cost: Cost | None, costs: dict[tuple[int, int], Cost]) -> str:
    if cost is None:
        return "no in-process sweep at this shape"
    dearer = [c for c in costs.values() if c.beyond_noise and c.lo is not None and c.lo > 1]
    cheaper = [c for c in costs.values() if c.beyond_noise and c.hi is not None and c.hi < 1]
    tail = ""
    if dearer or cheaper:
        tail = f" (beyond noise: SHA costlier at {len(dearer)} and cheaper at {len(cheaper)} of {len(costs)} shapes)"
    elif all(c.lo is None for c in costs.values()):
        tail = " (one block per point: no range to judge noise by)"
    return cost.words() + tail


def _with_accuracy(
    win: Candidate, lose: Candidate, signal: str, head: str, acc: Accuracy | None, acc_text: str
) -> Verdict:
    """A winner on capacity or cost, unless the other model is more accurate beyond noise."""
    if acc and acc.beyond_noise and acc.ahead != win.arch:
        return Verdict(
            lose.model,
            "trade-off",
            f"Trade-off: {win.model}, decided by {signal}: {head}; but {lose.model} is more accurate beyond "
            f"noise ({acc_text}). Serve {lose.model} unless replicas rather than accuracy are the binding cost.",
        )
    same = (
        "and it is more accurate beyond noise"
        if acc and acc.beyond_noise
        else "accuracy does not differ beyond noise"
    )
    if acc is None:
        same = "no test accuracy is recorded"
    return Verdict(
        win.model,
        signal,
        f"Serve {win.model}, decided by {signal}: {head}; {same} ({acc_text})."
        if acc
        else f"Serve {win.model}, decided by {signal}: {head}; {same}.",
    )
