"""Post-processing, the front's share of a request after the engine answers: probabilities,
top-k labels, the embedding as JSON, and where the request's time went."""

from __future__ import annotations

import time

import numpy as np

from contract import tensors
from service.catalog import Model
from service.messages import BatchResult


def timing(result: BatchResult, t_start: float) -> dict[str, float | int]:
    """Where a request's time went (v1's `timing`, v2's response `parameters`)."""
    return {
        "queue_ms": round(result.queue_ms, 3),
        "compute_ms": round(result.compute_ms, 3),
        "total_ms": round((time.perf_counter() - t_start) * 1000.0, 3),
        "batch_size": result.batch_size,
        "padded_length": result.padded_length,
    }


def predictions(entry: Model, result: BatchResult, top_k: int, embedding: bool) -> list[dict]:
    """Per row: the best label and score, the top-k, and the embedding when asked. The scores
    leave numpy as lists (`tolist`): numpy's cost per call and per indexed value
    is most of a small batch's post-processing."""
    labels = entry.manifest.labels
    logits = result.logits.astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    k = min(top_k, probs.shape[1])
    # k == 1: argmax, the first of equal maxima as the stable sort
    order = probs.argmax(axis=1)[:, None] if k == 1 else np.argsort(-probs, axis=1, kind="stable")[:, :k]
    out = []
    for r, (best, row) in enumerate(zip(order.tolist(), probs.tolist(), strict=True)):
        top = [
            {"label": labels[j] if j < len(labels) else str(j), "label_id": j, "score": row[j]} for j in best
        ]
        p = {**top[0], "top_k": top}
        if embedding:
            p[tensors.EMBEDDING] = result.embedding[r].astype(float).tolist()
        out.append(p)
    return out
