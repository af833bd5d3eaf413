"""Every CUDA kernel of a few runs, recorded by CUPTI through `torch.profiler` and reduced by
loadtest.profile.cupti (CUPTI records per process: ONNX Runtime's kernels as well as PyTorch's)."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch.profiler

from loadtest.profile.cupti import KernelProfile, gpu_events, summarize


def torch_profiler() -> ModuleType:
    """`torch.profiler` (a function, so a test can hand in a fake at this boundary)."""
    return torch.profiler


def record(
    run: Callable[[], object], *, runs: int, warmup: int, profiler: ModuleType | None = None
) -> KernelProfile:
    """`warmup` untimed calls of `run` (each must return when the GPU is done), then `runs` timed
    calls with CUDA activity recorded; the trace read back and reduced."""
    prof_mod = profiler or torch_profiler()
    for _ in range(warmup):
        run()
    walls: list[float] = []
    with prof_mod.profile(activities=[prof_mod.ProfilerActivity.CUDA]) as prof:
        for _ in range(runs):
            t0 = time.perf_counter()
            run()
            walls.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory(prefix="h2h-cupti-") as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = json.loads(path.read_text(encoding="utf-8"))
    return summarize(gpu_events(trace), runs, walls)
