"""Latency summaries: percentiles in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUANTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


def summarize(seconds: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """count, mean, min, max and p50/p95/p99 in ms (linear interpolation); None when empty."""
    a = np.asarray(seconds, dtype=np.float64)
    out: dict[str, float | int | None] = {"count": int(a.size)}
    if a.size == 0:
        out.update({f"{k}_ms": None for k in ("p50", "p95", "p99", "mean", "min", "max")})
        return out
    ms = a * 1e3
    for name, q in QUANTILES.items():
        out[f"{name}_ms"] = float(np.percentile(ms, q))
    out["mean_ms"] = float(ms.mean())
    out["min_ms"] = float(ms.min())
    out["max_ms"] = float(ms.max())
    return out
