"""loadtest.gpu.versus: the fastest way to run each model, per shape, across result folders, a
win counted only beyond the spread of the repeats."""

from __future__ import annotations

from contract.results import SweepRow
from loadtest.gpu import versus


def _row(mode: str, model: str, b: int, q: int, ms: float, spread: float = 0.0) -> SweepRow:
    lo_hi = {"p50_lo_ms": ms * (1 - spread), "p50_hi_ms": ms * (1 + spread), "blocks": 5} if spread else {}
    load = mode if mode == "inproc" else "closed"
    return SweepRow(
        mode=mode, load=load, model=model, arch=model, layers=1, heads=1, batch=b, seq=q, p50_ms=ms, **lo_hi
    )


def _rows(model: str, ms: dict[tuple[int, int], float], spread: float = 0.0) -> list[SweepRow]:
    return [_row("inproc", model, b, q, v, spread) for (b, q), v in ms.items()]


def test_table_marks_the_fastest_and_counts_wins():
    folders = {
        "model.fp16.onnx": _rows("mha", {(1, 32): 2.0, (64, 512): 9.0}) + _rows("sha", {(1, 32): 30.0}),
        "model.gpu.onnx": _rows("mha", {(1, 32): 0.5, (64, 512): 10.0}),
        "torch fp16 + CUDA graph": _rows("mha", {(1, 32): 0.7}) + _rows("sha", {(1, 32): 4.0}),
        "empty": [_row("http", "mha", 1, 32, 0.1)],
    }
    lines = versus.table_md(folders)
    assert lines[0] == "| model | batch x seq | model.fp16.onnx | model.gpu.onnx | torch fp16 + CUDA graph |"
    assert "| mha | 1 x 32 | 2.000 | **0.500** | 0.700 |" in lines
    assert "| mha | 64 x 512 | **9.000** | 10.000 | – |" in lines
    assert "| sha | 1 x 32 | 30.000 | – | **4.000** |" in lines
    assert lines[-2:] == [
        "- mha: fastest model.gpu.onnx at 1, model.fp16.onnx at 1 of 2 shapes.",
        "- sha: fastest torch fp16 + CUDA graph at 1 of 1 shapes.",
    ]
    assert versus.table_md({"only": folders["model.gpu.onnx"]}) == []


def test_a_difference_within_the_spread_is_no_win():
    folders = {
        "served": _rows("mha", {(1, 32): 1.00, (64, 512): 10.0}, spread=0.04),
        "torch": _rows("mha", {(1, 32): 1.05, (64, 512): 20.0}, spread=0.04),
    }
    lines = versus.table_md(folders)
    assert "| mha | 1 x 32 | 1.000 ±4% | 1.050 ±4% |" in lines  # 1.04 > 1.008: overlapping
    assert "| mha | 64 x 512 | **10.000 ±4%** | 20.000 ±4% |" in lines
    assert lines[-1] == "- mha: fastest served at 1 of 2 shapes; none beyond the spread at 1."
