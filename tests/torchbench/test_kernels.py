"""The CUDA kernel profile (CUPTI through torch.profiler): recorded kernel events reduced to
per-run figures, and the program over real sessions on the CPU with only the profiler faked (it
returns a recorded trace, as torch.profiler's export_chrome_trace writes one)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from loadtest.gpu import kernel_page
from loadtest.profile import cupti
from loadtest.profile.classify import ATTENTION, COPIES, ELEMENTWISE, GEMM, LAYERNORM
from torchbench import cupti_record, kernels

# two runs' worth of GPU activity as Kineto writes it (microseconds): per run a GEMM, attention,
# LayerNorm and an elementwise kernel, the GEMM and attention overlapping by 2 us, one copy
RECORDED = [
    ev
    for base in (0.0, 1000.0)
    for ev in (
        {"ph": "X", "cat": "kernel", "name": "sm90_xmma_gemm_f16f16_f16f32", "ts": base, "dur": 10.0},
        {"ph": "X", "cat": "kernel", "name": "fmha_v2_flash_attention_fp16", "ts": base + 8, "dur": 6.0},
        {
            "ph": "X",
            "cat": "kernel",
            "name": "onnxruntime::cuda::SkipLayerNormKernelSmall",
            "ts": base + 20,
            "dur": 2.0,
        },
        {
            "ph": "X",
            "cat": "kernel",
            "name": "onnxruntime::cuda::_BinaryElementWise",
            "ts": base + 30,
            "dur": 1.0,
        },
        {
            "ph": "X",
            "cat": "gpu_memcpy",
            "name": "Memcpy HtoD (Pageable -> Device)",
            "ts": base + 40,
            "dur": 1.0,
        },
    )
] + [{"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 1.0, "dur": 3.0}]


class FakeProfiler:
    """torch.profiler at its boundary: `profile(activities=...)` records nothing itself and
    exports the recorded trace above."""

    ProfilerActivity = SimpleNamespace(CUDA="CUDA")

    def __init__(self) -> None:
        self.activities: list[object] = []

    def profile(self, activities: list[object]) -> FakeProfiler:
        self.activities = activities
        return self

    def __enter__(self) -> FakeProfiler:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def export_chrome_trace(self, path: str) -> None:
        Path(path).write_text(json.dumps({"traceEvents": RECORDED}))


def test_recorded_kernels_become_per_run_figures():
    calls = []
    fake = FakeProfiler()
    prof = cupti_record.record(lambda: calls.append(1), runs=2, warmup=3, profiler=fake)
    assert len(calls) == 5 and fake.activities == ["CUDA"]  # warm-up outside the recording
    assert prof.kernels_per_run == 5 and prof.min_kernel_us == 1.0 and prof.mean_kernel_us == 4.0
    assert prof.kernel_ms == pytest.approx(0.020) and prof.busy_ms == pytest.approx(0.018)  # overlap once
    assert prof.floor_ms == pytest.approx(0.005)
    assert prof.class_ms[GEMM] == pytest.approx(0.010) and prof.class_ms[ATTENTION] == pytest.approx(0.006)
    assert prof.class_ms[LAYERNORM] == pytest.approx(0.002) and prof.class_ms[ELEMENTWISE] == pytest.approx(
        0.001
    )
    assert prof.class_ms[COPIES] == pytest.approx(0.001)  # the copy by its category, not its name
    assert prof.top_kernels[0] == ("sm90_xmma_gemm_f16f16_f16f32", pytest.approx(0.010))


def test_busy_time_counts_overlaps_once():
    assert cupti.busy_us([(0, 10), (5, 12), (20, 21), (20.5, 20.7)]) == 13.0
    assert cupti.busy_us([]) == 0.0


def test_the_program_profiles_ort_and_torch_runs(tiny_random_repo: Path, tmp_path: Path, monkeypatch):
    """Real ONNX Runtime (CPU) and PyTorch runs; only the profiler is the fake."""
    monkeypatch.setattr(cupti_record, "torch_profiler", FakeProfiler)
    argv = ["--repo", str(tiny_random_repo), "--variants", "model.onnx,model.gpu.onnx", "--graphs", "off"]
    argv += ["--torch-modes", "eager-fp32", "--provider", "cpu", "--seq", "8", "--runs", "2"]
    assert kernels.main([*argv, "--out", str(tmp_path)]) == 0
    data = kernel_page.load(tmp_path)
    ways = [(r["model"], r["runtime"], r["how"]) for r in data["rows"]]
    assert ways == [
        (m, rt, how)
        for m in ("mha-tiny-random", "sha-tiny-random")
        for rt, how in (("onnxruntime", "model.onnx"), ("torch", "torch eager fp32"))
    ]  # model.gpu.onnx is not in this repository: skipped
    row = data["rows"][0]
    assert row["kernels_per_run"] == 5 and row["floor_ms"] == pytest.approx(0.005) and row["wall_ms"] > 0
    md = (tmp_path / "report.md").read_text()
    assert "| mha-tiny-random | onnxruntime | model.onnx | 5 |" in md
    assert "- sha-tiny-random (8L-1H), model.onnx: 5 kernels per run, GPU busy 0.02 of" in md
    assert "floor 5 x 1.0 µs = 0.01 ms; GPU time gemm 50%, attention 30%, layernorm 10%" in md
