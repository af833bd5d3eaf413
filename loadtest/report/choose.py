"""Which model to serve: accuracy, latency of a lone request and capacity under the SLO, side by side.

Pure helpers over capacity rows (`capacity.json`) and sweep points (`results.json`); the report
renders them, `plots.accuracy_vs_capacity` draws them and `decide` turns them into the verdict.

Accuracy counts as different only beyond noise: a 95% interval on the difference of the two test
accuracies (two proportions over the manifests' test-set sizes, treated as independent samples,
which is wider than a paired test on the shared test set would be). It covers the test set's
sampling noise for these two trained models, not seed-to-seed variation (docs/accuracy.md).
Without test-set sizes, a gap under SAME_ACCURACY counts as equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from contract.results import CapacityRow, SweepRow
from loadtest.report.analysis import is_lone

SAME_ACCURACY = 0.001  # without test-set sizes: closer than this (0.1 point) counts as equally accurate
Z95 = 1.959963984540054


@dataclass
class Candidate:
    model: str
    arch: str
    layers: int
    heads: int
    accuracy: float | None  # test accuracy from the manifest (None: random-init or not recorded)
    p50_b1_ms: float | None  # a lone request at batch 1
    p50_source: str
    capacity: dict[tuple[int, int], float]  # (batch, seq) -> req/s within the SLO
    lower_bound: set[tuple[int, int]] = field(default_factory=set)  # shapes where no probe failed
    test_examples: int | None = None  # size of the test set the accuracy was measured on
    norm: str | None = None  # admin, pre or post (from the manifest): which seeded variant it is

    def accuracy_se(self) -> float | None:
        """Standard error of the test accuracy from the test set's size (None when either is unknown)."""
        if self.accuracy is None or not self.test_examples:
            return None
        return math.sqrt(self.accuracy * (1 - self.accuracy) / self.test_examples)

    @property
    def shape_label(self) -> str:
        return f"{self.arch.upper()} {self.layers}L-{self.heads}H"


def headline_shape(rows: list[CapacityRow]) -> tuple[int, int] | None:
    """The shape the one-line answer and the plot use: the smallest batch, then the smallest sequence."""
    shapes = sorted({(r.batch, r.seq) for r in rows})
    return shapes[0] if shapes else None


@dataclass(frozen=True)
class Gap:
    """Test accuracy of `better` minus `other`, with its 95% interval when test-set sizes are known."""

    better: Candidate
    other: Candidate
    diff: float
    low: float | None
    high: float | None

    @property
    def beyond_noise(self) -> bool:
        return self.low > 0 if self.low is not None else self.diff >= SAME_ACCURACY

    def words(self) -> str:
        """'test accuracy mha-small 0.7861 vs sha-small 0.7806, SHA − MHA -0.55 points, 95% interval
        [-1.59, +0.49] over 11,765 test examples': MHA first and SHA − MHA, the sign every table uses
        (better − worse when the two are not one MHA and one SHA)."""
        mha_sha = {self.better.arch, self.other.arch} == {"mha", "sha"}
        first_better = mha_sha and self.better.arch == "mha"
        a, b = (self.better, self.other) if first_better else (self.other, self.better)  # reads b − a
        sign = -1.0 if first_better else 1.0
        label = "SHA − MHA" if mha_sha else f"{b.model} − {a.model}"
        text = f"test accuracy {a.model} {a.accuracy:.4f} vs {b.model} {b.accuracy:.4f}, "
        text += f"{label} {100 * sign * self.diff:+.2f} points"
        if self.low is None or self.high is None:
            return text
        low, high = sorted((sign * self.low, sign * self.high))
        n = (
            f"{a.test_examples:,}"
            if a.test_examples == b.test_examples
            else f"{a.test_examples:,}/{b.test_examples:,}"
        )
        return f"{text}, 95% interval [{100 * low:+.2f}, {100 * high:+.2f}] over {n} test examples"


def accuracy_gap(a: Candidate, b: Candidate) -> Gap | None:
    """The more accurate of two candidates and by how much (None when either has no accuracy)."""
    if a.accuracy is None or b.accuracy is None:
        return None
    better, other = (a, b) if a.accuracy >= b.accuracy else (b, a)
    diff = float(better.accuracy or 0.0) - float(other.accuracy or 0.0)
    se_b, se_o = better.accuracy_se(), other.accuracy_se()
    if se_b is None or se_o is None:
        return Gap(better, other, diff, None, None)
    se = math.sqrt(se_b**2 + se_o**2)
    return Gap(better, other, diff, diff - Z95 * se, diff + Z95 * se)


def _accuracy(model: str, row: CapacityRow, manifests: dict[str, Any]) -> float | None:
    acc = row.accuracy
    if acc is None:
        acc = (manifests.get(model) or {}).get("test_accuracy")
    return float(acc) if acc is not None else None


def _p50_b1(model: str, cap_rows: list[CapacityRow], points: list[SweepRow]) -> tuple[float | None, str]:
    """p50 at batch 1: the capacity run's concurrency-1 calibration, else the sweep's HTTP c=1, else in-process."""
    own = sorted(
        (r.seq, r.p50_c1_ms)
        for r in cap_rows
        if r.model == model and r.batch == 1 and r.p50_c1_ms is not None
    )
    if own:
        return own[0][1], f"HTTP, concurrency 1, seq {own[0][0]}"
    for source, keep in (
        ("HTTP, concurrency 1", is_lone),
        ("in-process", lambda p: p.mode == "inproc"),
    ):
        hits = sorted(
            (p.seq, p.p50_ms) for p in points if p.model == model and p.batch == 1 and keep(p) and p.p50_ms
        )
        if hits:
            return hits[0][1], f"{source}, seq {hits[0][0]}"
    return None, ""


def candidates(
    cap_rows: list[CapacityRow], points: list[SweepRow], manifests: dict[str, Any]
) -> list[Candidate]:
    out: dict[str, Candidate] = {}
    for r in cap_rows:
        m = r.model
        if m not in out:
            p50, src = _p50_b1(m, cap_rows, points)
            n = (manifests.get(m) or {}).get("test_examples")
            acc = _accuracy(m, r, manifests)
            out[m] = Candidate(m, r.arch, r.layers, r.heads, acc, p50, src, {})
            out[m].test_examples = int(n) if n else None
            out[m].norm = (manifests.get(m) or {}).get("norm")
        key = (r.batch, r.seq)
        out[m].capacity[key] = r.capacity_rps
        if r.failed_above_rps is None and r.capacity_rps > 0:
            out[m].lower_bound.add(key)
    return list(out.values())
