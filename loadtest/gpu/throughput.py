"""Achieved model FLOP/s against the measured matrix peak: how much of the card a way of running
the models uses, from the in-process p50s and the models' shapes.

FLOPs per token of an encoder layer, counted as models.config.flops_per_token counts them (multiply-
adds x 2; restated here because the load tester does not import the torch package): the Q, K, V and output
projections (4 x d_model x heads*head_dim), the feed-forward pair (2 x d_model x ffn_dim) and
attention's two products over the sequence (2 x seq x heads*head_dim). Embedding lookups, norms
and elementwise work are left out (small beside these), so the rate is a slight underestimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract.results import SweepRow


@dataclass(frozen=True)
class Shape:
    """The fields of a model's manifest that set its FLOPs."""

    layers: int
    d_model: int
    heads: int
    head_dim: int
    ffn_dim: int

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> Shape | None:
        try:
            return cls(*(int(manifest[k]) for k in ("layers", "d_model", "heads", "head_dim", "ffn_dim")))
        except (KeyError, TypeError, ValueError):
            return None

    def flops_per_token(self, seq: int) -> float:
        inner = self.heads * self.head_dim
        per_layer = 2 * (4 * self.d_model * inner + 2 * self.d_model * self.ffn_dim + 2 * seq * inner)
        return float(self.layers * per_layer)


@dataclass(frozen=True)
class Rate:
    model: str
    label: str
    batch: int
    seq: int
    p50_ms: float
    tokens_per_s: float
    tflops: float
    peak_tflops: float | None  # the measured peak of the precision the way runs in
    precision: str

    @property
    def share(self) -> float | None:
        return self.tflops / self.peak_tflops if self.peak_tflops else None

    def sentence(self) -> str:
        share = (
            f", {self.share:.0%} of the measured {self.precision} peak ({self.peak_tflops:,.0f})"
            if self.share
            else ""
        )
        return (
            f"{self.model}, {self.label}, batch {self.batch} x seq {self.seq}: {self.p50_ms:.3f} ms, "
            f"{self.tokens_per_s / 1e6:.2f}M tokens/s, {self.tflops:,.0f} TFLOP/s{share}"
        )


def precision(label: str) -> str:
    """The matrix precision a way of running uses: fp16 for fp16/fused variants, else TF32/fp32."""
    return "fp16" if ("fp16" in label or "gpu.onnx" in label) else "fp32"


def rate(row: SweepRow, label: str, shape: Shape, peaks: dict[str, float]) -> Rate:
    b, q, p50 = row.batch, row.seq, float(row.p50_ms or 0.0)
    tokens = b * q / (p50 / 1e3)
    prec = precision(label)
    peak = (
        peaks.get(prec)
        if prec == "fp16"
        else max((peaks[k] for k in ("fp32", "tf32") if k in peaks), default=None)
    )
    return Rate(row.model, label, b, q, p50, tokens, tokens * shape.flops_per_token(q) / 1e12, peak, prec)


def best_rates(
    folders: dict[str, list[SweepRow]], manifests: dict[str, dict[str, Any]], peaks: dict[str, float]
) -> list[Rate]:
    """Per model, the way and shape with the highest model TFLOP/s across the folders."""
    best: dict[str, Rate] = {}
    for label, rows in folders.items():
        for row in rows:
            shape = Shape.of(manifests.get(row.model, {}))
            if row.mode != "inproc" or not row.p50_ms or shape is None:
                continue
            r = rate(row, label, shape, peaks)
            if row.model not in best or r.tflops > best[row.model].tflops:
                best[row.model] = r
    return [best[m] for m in sorted(best)]


def at_shape(
    folders: dict[str, list[SweepRow]],
    manifests: dict[str, dict[str, Any]],
    peaks: dict[str, float],
    batch: int,
    seq: int,
) -> list[Rate]:
    """Per model, the fastest way at one shape (the goal shape, batch 64 x seq 128)."""
    rows = {lb: [r for r in rs if r.batch == batch and r.seq == seq] for lb, rs in folders.items()}
    return best_rates(rows, manifests, peaks)
