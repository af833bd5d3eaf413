"""Every CUDA kernel a run launches, as CUPTI recorded it (torchbench.cupti_record, through
`torch.profiler`), reduced to what one run costs on the GPU: kernels per run, GPU busy time against the wall, the mean and the
shortest kernel, GPU time by operator class from the kernels' names.

CUPTI records kernels per process, so it sees ONNX Runtime's kernels as well as PyTorch's: the
same recorder serves both. ONNX Runtime's own profiler does not (its CUDA builds here record no
kernel events), which is why this exists beside `trace`. The floor it states, kernels per run x
the shortest kernel, is what the run would cost if every kernel were as short as the shortest:
when the measured time is near it, the run is bound by how many kernels it launches, not by what
they compute.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from loadtest.profile.classify import CLASSES, COPIES, kernel_class

GPU_CATEGORIES = {
    "kernel": None,
    "gpu_memcpy": COPIES,
    "gpu_memset": COPIES,
}  # category -> class (None: by name)


@dataclass(frozen=True)
class KernelProfile:
    """Per-run means over the profiled runs (microseconds for single kernels, ms for a run)."""

    runs: int
    wall_ms: float  # the call as its caller timed it (profiler on)
    kernels_per_run: float
    busy_ms: float  # GPU time with at least one kernel running (overlaps counted once)
    kernel_ms: float  # the kernels' durations summed
    mean_kernel_us: float
    min_kernel_us: float
    class_ms: dict[str, float] = field(default_factory=dict)
    top_kernels: list[tuple[str, float]] = field(default_factory=list)  # name, ms per run

    @property
    def floor_ms(self) -> float:
        """Kernels per run x the shortest kernel: the run if every kernel were that short."""
        return self.kernels_per_run * self.min_kernel_us / 1e3

    @property
    def busy_share(self) -> float:
        return self.busy_ms / self.wall_ms if self.wall_ms else 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"floor_ms": self.floor_ms, "busy_share": self.busy_share}


def gpu_events(trace: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GPU activity of a Chrome trace (kernels, copies, memsets) with a duration."""
    events = trace.get("traceEvents", []) if isinstance(trace, dict) else trace
    return [e for e in events if e.get("cat") in GPU_CATEGORIES and e.get("ph", "X") == "X" and "dur" in e]


def busy_us(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals: time with at least one kernel running."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def summarize(events: list[dict[str, Any]], runs: int, walls_s: list[float], top: int = 6) -> KernelProfile:
    """The recorded GPU events of `runs` runs as per-run figures."""
    n = max(runs, 1)
    durs = [float(e["dur"]) for e in events]
    classes = {c: 0.0 for c in CLASSES}
    by_name: dict[str, float] = {}
    for e, d in zip(events, durs, strict=True):
        name = str(e.get("name", ""))
        classes[GPU_CATEGORIES[e["cat"]] or kernel_class(name)] += d / n / 1e3
        by_name[name] = by_name.get(name, 0.0) + d
    busy = busy_us((float(e["ts"]), float(e["ts"]) + d) for e, d in zip(events, durs, strict=True))
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1])[:top]
    return KernelProfile(
        runs=runs,
        wall_ms=sum(walls_s) / n * 1e3,
        kernels_per_run=len(durs) / n,
        busy_ms=busy / n / 1e3,
        kernel_ms=sum(durs) / n / 1e3,
        mean_kernel_us=sum(durs) / len(durs) if durs else 0.0,
        min_kernel_us=min(durs, default=0.0),
        class_ms=classes,
        top_kernels=[(k, us / n / 1e3) for k, us in ranked],
    )
