"""loadtest.bench.cuda_io: its flags, its refusal without a GPU, and (on a GPU) one real row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.runtime import session as runtime


def _has_cuda() -> bool:
    import onnxruntime as ort

    return runtime.CUDA in ort.get_available_providers() and runtime.gpu_count() > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shapes", "1y16"], "--shapes must look like 1x16,8x64"),
        ([], "needs onnxruntime's CUDAExecutionProvider"),
    ],
)
def test_cli_exit_2_with_one_line(args: list[str], message: str) -> None:
    if not args and _has_cuda():
        pytest.skip("a GPU is present: the no-GPU refusal cannot happen here")
    r = subprocess.run(
        [sys.executable, "-m", "loadtest.bench.cuda_io", *args], capture_output=True, text=True
    )
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.gpu
def test_one_row_on_cuda(tiny_repo: Path) -> None:
    if not _has_cuda():
        pytest.skip("needs onnxruntime's CUDAExecutionProvider and an NVIDIA GPU")
    from loadtest.bench.cuda_io import measure

    row = measure(tiny_repo / "sha-tiny", None, 1, 16)
    assert row["provider"] == runtime.CUDA and row["alone_ms"] > 0 and row["service_io_ms"] > 0
    assert ("cuda_graph_ms" in row) != ("cuda_graph_error" in row)  # replayed, or ORT said why not
