"""Which model to serve: accuracy, latency of a lone request and capacity under the SLO, side by side.

Pure helpers over capacity rows (`capacity.json`) and sweep points (`results.json`); the report
renders them and `plots.accuracy_vs_capacity` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loadtest.results import Row

SAME_ACCURACY = 0.001  # closer than this (0.1 point) counts as equally accurate


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

    @property
    def shape_label(self) -> str:
        return f"{self.arch.upper()} {self.layers}L-{self.heads}H"


def headline_shape(rows: list[Row]) -> tuple[int, int] | None:
    """The shape the one-line answer and the plot use: the smallest batch, then the smallest sequence."""
    shapes = sorted({(int(r["batch"]), int(r["seq"])) for r in rows})
    return shapes[0] if shapes else None


def _accuracy(model: str, row: Row, manifests: dict[str, Any]) -> float | None:
    acc = row.get("accuracy")
    if acc is None:
        acc = (manifests.get(model) or {}).get("test_accuracy")
    return float(acc) if acc is not None else None


def _p50_b1(model: str, cap_rows: list[Row], points: list[Row]) -> tuple[float | None, str]:
    """p50 at batch 1: the capacity run's concurrency-1 calibration, else the sweep's HTTP c=1, else in-process."""
    own = sorted(
        (int(r["seq"]), r["p50_c1_ms"])
        for r in cap_rows
        if r["model"] == model and int(r["batch"]) == 1 and r.get("p50_c1_ms") is not None
    )
    if own:
        return float(own[0][1]), f"HTTP, concurrency 1, seq {own[0][0]}"
    for source, keep in (
        ("HTTP, concurrency 1", lambda p: p.get("load") == "closed" and p.get("concurrency") == 1),
        ("in-process", lambda p: p.get("mode") == "inproc"),
    ):
        hits = sorted(
            (int(p["seq"]), p["p50_ms"])
            for p in points
            if p.get("model") == model and int(p.get("batch", 0)) == 1 and keep(p) and p.get("p50_ms")
        )
        if hits:
            return float(hits[0][1]), f"{source}, seq {hits[0][0]}"
    return None, ""


def candidates(cap_rows: list[Row], points: list[Row], manifests: dict[str, Any]) -> list[Candidate]:
    out: dict[str, Candidate] = {}
    for r in cap_rows:
        m = r["model"]
        if m not in out:
            p50, src = _p50_b1(m, cap_rows, points)
            out[m] = Candidate(
                m, r["arch"], int(r["layers"]), int(r["heads"]), _accuracy(m, r, manifests), p50, src, {}
            )
        key = (int(r["batch"]), int(r["seq"]))
        out[m].capacity[key] = float(r["capacity_rps"])
        if r.get("failed_above_rps") is None and float(r["capacity_rps"]) > 0:
            out[m].lower_bound.add(key)
    return list(out.values())


def recommend(cands: list[Candidate], shape: tuple[int, int], slo_ms: float) -> str:
    """One plain sentence with the numbers: the model to serve at `shape` under p99 <= `slo_ms`."""
    text = _recommend(cands, shape, slo_ms)
    bounds = [c.model for c in cands if shape in c.lower_bound]
    if bounds:
        text += (
            f" ({' and '.join(bounds)}: lower bound{'s' if len(bounds) > 1 else ''}, every probe passed; "
            f"raise --max-probes for the limit.)"
        )
    return text


def _recommend(cands: list[Candidate], shape: tuple[int, int], slo_ms: float) -> str:
    b, q = shape
    where = f"within p99 <= {slo_ms:g} ms at batch {b} x seq {q}"
    cs = [c for c in cands if shape in c.capacity]
    if len(cs) < 2:
        return "Only one model was measured, so there is nothing to choose between."
    by_cap = sorted(cs, key=lambda c: c.capacity[shape], reverse=True)
    fast, slow = by_cap[0], by_cap[1]
    if fast.capacity[shape] <= 0:
        return f"No model meets p99 <= {slo_ms:g} ms at batch {b} x seq {q} at any rate tried; relax the SLO or add replicas."
    cap = lambda c: f"{c.capacity[shape]:,.0f} req/s"  # noqa: E731
    times = f"{fast.capacity[shape] / slow.capacity[shape]:.2f}x" if slow.capacity[shape] > 0 else "all"
    known = [c for c in cs if c.accuracy is not None]
    if len(known) < len(cs):
        return (
            f"No test accuracy is recorded for {', '.join(c.model for c in cs if c.accuracy is None)} "
            f"(random-init or untrained export), so on cost alone serve {fast.model}: it carries {times} the "
            f"traffic of {slow.model} {where} ({cap(fast)} vs {cap(slow)})."
        )
    best = max(known, key=lambda c: c.accuracy or 0.0)
    gap = (best.accuracy or 0.0) - (fast.accuracy or 0.0)
    if best is fast or gap < SAME_ACCURACY:
        fa, sa = fast.accuracy or 0.0, slow.accuracy or 0.0
        word = "as accurate as" if abs(fa - sa) < SAME_ACCURACY else "more accurate than"
        return (
            f"Serve {fast.model}: it is {word} {slow.model} ({fa:.4f} vs {sa:.4f} test accuracy) and "
            f"carries {times} its traffic {where} ({cap(fast)} vs {cap(slow)})."
        )
    return (
        f"Serve {best.model} if {cap(best)} per replica covers your traffic {where}: it is {gap * 100:.1f} "
        f"points more accurate ({best.accuracy:.4f} vs {fast.accuracy:.4f} test accuracy); otherwise "
        f"{fast.model} carries {fast.capacity[shape] / max(best.capacity[shape], 1e-9):.2f}x as much "
        f"({cap(fast)})."
    )
