"""torchbench.torch_ref, the PyTorch reference: the export's own weights rebuilt (random-init by
construction, trained from the checkpoint; both checked against model.onnx), rows in the in-process
sweep's format that the report reads, one-line refusals; the CUDA modes on a GPU (marked)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT
from torchbench import torch_ref


def bench_torch() -> ModuleType:
    return torch_ref


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torchbench.torch_ref", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_random_init_weights_are_the_exports(tiny_random_repo: Path):
    bt = bench_torch()
    model, how = bt.reference_model(tiny_random_repo / "sha-tiny-random", seed=0)
    assert how == "random-init preset tiny, seed 0 (the export's construction)" and model.cfg.layers == 8
    assert bt.onnx_delta(model, tiny_random_repo / "sha-tiny-random") < 1e-4
    other, _ = bt.reference_model(tiny_random_repo / "sha-tiny-random", seed=1)
    assert bt.onnx_delta(other, tiny_random_repo / "sha-tiny-random") > 1e-2  # another seed is another model


def test_trained_weights_come_from_the_checkpoint(tiny_repo: Path, tiny_runs: dict[str, Path]):
    bt = bench_torch()
    model, how = bt.reference_model(tiny_repo / "mha-tiny", seed=0)
    assert how == f"checkpoint {tiny_runs['mha'].resolve()}"
    assert bt.onnx_delta(model, tiny_repo / "mha-tiny") < 1e-4


def test_cpu_eager_rows_read_like_the_inproc_sweep(tiny_random_repo: Path, tmp_path: Path):
    from contract.results import load
    from loadtest.report.markdown import write_report

    r = _run(
        "--repo",
        str(tiny_random_repo),
        "--out",
        str(tmp_path),
        "--batch",
        "1,2",
        "--seq",
        "8",
        "--budget-s",
        "0.05",
        "--threads",
        "1",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    data = load(tmp_path / "torch-eager-fp32")
    rows = data.points
    assert [(p.model, p.batch, p.seq) for p in rows] == [
        (m, b, 8) for m in ("mha-tiny-random", "sha-tiny-random") for b in (1, 2)
    ]
    for p in rows:
        assert p.variant == "torch eager fp32" and p.provider == "torch-cpu"
        assert p.requests >= 3 and 0 < (p.min_ms or 0) <= (p.p50_ms or 0) <= (p.max_ms or 0)
        assert p.tokens_per_s == pytest.approx(p.batch * p.seq / ((p.p50_ms or 0) / 1e3))
    assert (data.meta.elapsed_s or 0) > 0  # written last: the folder is complete
    assert all(c["onnx_max_abs_logits"] < 1e-4 for c in data.meta.reference.values())
    md = write_report(tmp_path / "torch-eager-fp32").read_text()
    assert "sha-tiny-random" in md and "mha-tiny-random" in md


def test_refusals_are_one_line(tiny_random_repo: Path, tmp_path: Path):
    broken = tmp_path / "repo"
    shutil.copytree(tiny_random_repo / "mha-tiny-random", broken / "mha-lost")
    manifest = json.loads((broken / "mha-lost" / "manifest.json").read_text())
    manifest.update(random_init=False, source_run=str(tmp_path / "gone"))
    (broken / "mha-lost" / "manifest.json").write_text(json.dumps(manifest))
    cases = [
        (("--repo", str(broken)), "mha-lost: its training run"),
        (("--repo", str(tiny_random_repo), "--modes", "graph-fp16"), "--modes graph-fp16 need --device cuda"),
        (("--repo", str(tiny_random_repo), "--modes", "warp"), "--modes: unknown warp"),
        (("--repo", str(tiny_random_repo), "--batch", "0"), "--batch must list numbers of at least 1"),
    ]
    for args, says in cases:
        r = _run(*args, "--out", str(tmp_path / "out"))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and says in r.stderr, (args, r.stderr)
    assert not (tmp_path / "out").exists()


@pytest.mark.gpu
def test_cuda_modes_agree_and_time(tiny_random_repo: Path, tmp_path: Path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device for PyTorch")
    bt = bench_torch()
    model, _ = bt.reference_model(tiny_random_repo / "sha-tiny-random", seed=0)
    ids = torch.randint(2, model.cfg.vocab_size, (2, 16), device="cuda")
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        want = model.to("cuda")(ids, mask)[0].float()
        for mode in ("eager-fp16", "graph-fp16"):
            m = bt.prepared(model, mode, "cuda")
            bt.runner(m, mode, ids, mask)()
            got = m(ids, mask)[0].float()
            assert (got - want).abs().max().item() < 5e-2, mode
    r = _run(
        "--repo",
        str(tiny_random_repo),
        "--device",
        "cuda",
        "--out",
        str(tmp_path),
        "--batch",
        "1",
        "--seq",
        "16",
        "--budget-s",
        "0.1",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    for mode in ("eager-fp16", "graph-fp16"):
        rows = json.loads((tmp_path / f"torch-{mode}" / "results.json").read_text())["points"]
        assert len(rows) == 2 and all(p["provider"] == "torch-cuda" and p["p50_ms"] > 0 for p in rows)
