"""loadtest.report.versus: the fastest way to run each model, per shape, across result folders."""

from __future__ import annotations

from loadtest.report import versus
from loadtest.results import SweepRow


def _row(mode: str, model: str, b: int, q: int, ms: float) -> SweepRow:
    return SweepRow(
        mode=mode,
        load=mode if mode == "inproc" else "closed",
        model=model,
        arch=model,
        layers=1,
        heads=1,
        batch=b,
        seq=q,
        p50_ms=ms,
    )


def _rows(model: str, ms: dict[tuple[int, int], float]) -> list[SweepRow]:
    return [_row("inproc", model, b, q, v) for (b, q), v in ms.items()]


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
