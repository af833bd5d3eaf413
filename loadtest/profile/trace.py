"""ONNX Runtime's profile (the Chrome-trace JSON `SessionOptions.enable_profiling` writes) reduced
to what one run costs: nodes per run, time per operator class, and the run's own duration.

Events used: "Session" `model_run` (one per `run`, its wall time inside ONNX Runtime), "Node"
`<node>_kernel_time` (one per node per run: its operator type in `args.op_name`) and, where the
build emits them (CUDA with CUPTI profiling), "Kernel" events (GPU time of each kernel). A node's
time on the CUDA provider is host time (mostly the launch), not GPU time: the run's wall minus the
nodes' sum is then the wait for the GPU plus the framework, which is why kernel time is kept apart.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from loadtest.profile.classify import CLASSES, kernel_class, op_class

Event = dict[str, Any]
NODE_SUFFIX = "_kernel_time"


class TraceError(ValueError):
    """The trace has no timed runs after the warm-up (one line for the user)."""


def _runs(events: Iterable[Event], warmup: int) -> list[tuple[float, float]]:
    """(start, end) in microseconds of each `model_run` after the first `warmup`, in order."""
    runs = sorted(
        (float(e["ts"]), float(e["ts"]) + float(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    return runs[warmup:]


def _assign(runs: list[tuple[float, float]], events: Iterable[Event]) -> list[Event]:
    """The events that start inside one of `runs` (warm-up runs and session set-up drop out)."""
    starts = [s for s, _ in runs]
    kept = []
    for e in events:
        ts = float(e["ts"])
        i = bisect.bisect_right(starts, ts) - 1
        if i >= 0 and ts <= runs[i][1]:
            kept.append(e)
    return kept


def _per_class(items: list[tuple[str, float]], n: int) -> dict[str, dict[str, float]]:
    """{class: {"count": per run, "ms": per run}} over (class, microseconds) pairs, every class present."""
    count: Counter[str] = Counter()
    us: defaultdict[str, float] = defaultdict(float)
    for cls, dur in items:
        count[cls] += 1
        us[cls] += dur
    return {c: {"count": count[c] / n, "ms": us[c] / n / 1e3} for c in CLASSES}


def summarize(events: list[Event], warmup: int, top: int = 6) -> dict[str, Any]:
    """Per-run means over the runs after `warmup`: the run's wall in ONNX Runtime, nodes and their
    time by class, the gap (run minus nodes), kernels where the trace has them, the costliest ops."""
    runs = _runs(events, warmup)
    if not runs:
        raise TraceError(f"the profile has no model_run after {warmup} warm-up run(s)")
    n = len(runs)
    nodes = _assign(
        runs, (e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith(NODE_SUFFIX))
    )
    kernels = _assign(runs, (e for e in events if e.get("cat") == "Kernel"))
    ops = [(str(e.get("args", {}).get("op_name", "?")), float(e["dur"])) for e in nodes]
    run_ms = sum(end - start for start, end in runs) / n / 1e3
    node_ms = sum(d for _, d in ops) / n / 1e3
    by_op: defaultdict[str, float] = defaultdict(float)
    for op, d in ops:
        by_op[op] += d
    out: dict[str, Any] = {
        "runs": n,
        "run_ms": run_ms,
        "nodes_per_run": len(nodes) / n,
        "node_ms": node_ms,
        "gap_ms": run_ms - node_ms,
        "classes": _per_class([(op_class(op), d) for op, d in ops], n),
        "top_ops": [[op, us / n / 1e3] for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:top]],
        "kernels_per_run": None,
        "kernel_ms": None,
        "kernel_classes": None,
    }
    if kernels:
        pairs = [
            (kernel_class(str(e.get("name", "")), e.get("args", {}).get("op_name")), float(e["dur"]))
            for e in kernels
        ]
        out.update(
            kernels_per_run=len(kernels) / n,
            kernel_ms=sum(d for _, d in pairs) / n / 1e3,
            kernel_classes=_per_class(pairs, n),
        )
    return out
