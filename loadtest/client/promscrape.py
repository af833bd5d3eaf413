"""Read the service's own queue/compute split from `/metrics` (Prometheus text format).

Scrape before and after a load point and diff: the histograms' `_sum` and `_count` give the
mean time a request waited in the batcher queue and the mean ONNX Runtime time per batch,
for exactly the requests of that point (the sweep runs one point at a time).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# (metric family, sample suffix) -> key
_WANTED = {
    ("h2h_queue_wait_seconds", "_sum"): "queue_sum",
    ("h2h_queue_wait_seconds", "_count"): "queue_count",
    ("h2h_compute_seconds", "_sum"): "compute_sum",
    ("h2h_compute_seconds", "_count"): "compute_count",
    ("h2h_batch_size", "_sum"): "rows_sum",
    ("h2h_batch_size", "_count"): "batches",
}


@dataclass(frozen=True)
class Snapshot:
    values: dict[str, float]  # key -> value for one model
    rejected: float = 0.0


def parse(text: str, model: str) -> Snapshot:
    """Sums and counts for `model` from a /metrics body (missing series read as 0)."""
    vals = dict.fromkeys(_WANTED.values(), 0.0)
    rejected = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.labels.get("model") != model:
                continue
            if s.name in ("h2h_rejected_total", "h2h_rejected"):
                rejected += s.value
                continue
            for (family, suffix), key in _WANTED.items():
                if s.name == family + suffix:
                    vals[key] = s.value
    return Snapshot(vals, rejected)


def diff(before: Snapshot, after: Snapshot) -> dict[str, float | None]:
    """Server-side split over the interval: mean queue ms per request, mean compute ms per batch."""
    d = {k: after.values[k] - before.values[k] for k in after.values}
    qn, cn = d["queue_count"], d["compute_count"]
    return {
        "server_queue_ms": d["queue_sum"] / qn * 1e3 if qn > 0 else None,
        "server_compute_ms": d["compute_sum"] / cn * 1e3 if cn > 0 else None,
        "server_batches": int(d["batches"]),
        "server_rows_per_batch": d["rows_sum"] / d["batches"] if d["batches"] > 0 else None,
        "server_rejected": int(after.rejected - before.rejected),
    }


def inflight(text: str, model: str) -> float:
    """`h2h_inflight_requests` for `model` (requests accepted and not yet answered; 0 when absent)."""
    for fam in text_string_to_metric_families(text):
        if fam.name == "h2h_inflight_requests":
            for s in fam.samples:
                if s.labels.get("model") == model:
                    return s.value
    return 0.0
