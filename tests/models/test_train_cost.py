"""python -m models.train_cost: training-step timing of the pair, in the inference sweep's format
(contract.results rows, which the load report renders)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from loadtest.report.markdown import write_report
from models import train_cost


def test_cpu_sweep_writes_sweep_rows_and_the_ratio_report(tmp_path: Path) -> None:
    out = tmp_path / "tc"
    argv = [
        "--preset",
        "tiny",
        "--batch",
        "1,2",
        "--seq",
        "4,8",
        "--budget-s",
        "0.01",
        "--threads",
        "1",
        "--clock",
        "cpu",
    ]
    assert train_cost.main([*argv, "--vocab-size", "64", "--out", str(out)]) == 0
    data = json.loads((out / "train-eager" / "results.json").read_text())
    rows = data["points"]
    assert [(r["model"], r["batch"], r["seq"]) for r in rows] == [
        (m, b, q) for b in (1, 2) for q in (4, 8) for m in ("mha-tiny", "sha-tiny")
    ]  # MHA and SHA back to back at each shape
    for r in rows:
        assert r["mode"] == r["load"] == "inproc" and r["provider"] == "torch-cpu" and r["errors"] == 0
        assert (
            r["variant"] == "train step, torch eager fp32, CPU seconds"
            and r["requests"] >= train_cost.MIN_REPEATS
        )
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["max_ms"]
        assert r["tokens_per_s"] == pytest.approx(r["batch"] * r["seq"] / r["p50_ms"] * 1e3)
    assert (rows[0]["layers"], rows[0]["heads"], rows[1]["layers"], rows[1]["heads"]) == (2, 4, 8, 1)
    assert data["meta"]["command"].startswith("python -m models.train_cost --preset tiny")
    assert not (out / "train-eager" / "report.md").exists()  # the load report's job, not models/'
    report = write_report(out / "train-eager").read_text()  # what `python -m loadtest report` does
    assert "## SHA / MHA p50 latency ratio" in report and "| seq 8 |" in report
    assert "## In-process (train step, torch eager fp32, CPU seconds)" in report
    assert (out / "train-eager" / "ratio_heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_a_step_trains_the_model() -> None:
    """The timed call is a real step: forward, backward and AdamW move the weights."""
    s = train_cost.TrainCostSettings(preset="tiny", vocab_size=64)
    model = train_cost.pair(s)["sha-tiny"].train()
    before = [p.detach().clone() for p in model.parameters()]
    train_cost.step_fn(model, 2, 4, "cpu", graph=False)()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert changed > len(before) // 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--modes", "graph"], "error: --modes graph needs --device cuda (CUDA graphs)"),
        (["--clock", "cpu", "--device", "cuda"], "error: --clock cpu times CPU work: it needs --device cpu"),
        (["--modes", "compiled"], "error: --modes: unknown compiled; choose from eager, graph"),
        (["--batch", "1,x"], "error: batch: must be a comma list of whole numbers, got '1,x'"),
        (["--seq", "0"], "error: seq: must list numbers of at least 1, got '0'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        train_cost.main([*args, "--out", str(tmp_path / "tc")])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]
    assert not (tmp_path / "tc").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_eager_and_graph_steps(tmp_path: Path) -> None:
    """On a GPU: both modes time every shape, and a replayed graph step trains like an eager one."""
    out = tmp_path / "tc"
    argv = ["--preset", "tiny", "--device", "cuda", "--batch", "1,8", "--seq", "8", "--budget-s", "0.05"]
    assert train_cost.main([*argv, "--out", str(out)]) == 0
    for mode in ("eager", "graph"):
        rows = json.loads((out / f"train-{mode}" / "results.json").read_text())["points"]
        assert len(rows) == 4 and {r["provider"] for r in rows} == {"torch-cuda"}
    model = train_cost.pair(train_cost.TrainCostSettings(preset="tiny")).popitem()[1].cuda().train()
    step = train_cost.step_fn(model, 2, 8, "cuda", graph=True)
    before = [p.detach().clone() for p in model.parameters()]
    step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
