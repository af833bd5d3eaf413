"""`python -m loadtest profile`: the operator classes, the trace reduced to per-run figures (warm-up
runs left out), and the command on the tiny random-init pair on CPU (table, profile.json, report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.profile import classify, trace
from loadtest.profile.classify import ATTENTION, COPIES, ELEMENTWISE, GEMM, LAYERNORM, OTHER


def test_operator_classes():
    want = {
        "Attention": ATTENTION,
        "MultiHeadAttention": ATTENTION,
        "MatMul": GEMM,
        "FusedMatMul": GEMM,
        "Gemm": GEMM,
        "LayerNormalization": LAYERNORM,
        "SkipLayerNormalization": LAYERNORM,
        "Add": ELEMENTWISE,
        "BiasGelu": ELEMENTWISE,
        "Softmax": ELEMENTWISE,
        "ReduceMax": ELEMENTWISE,
        "Erf": ELEMENTWISE,
        "MemcpyToHost": COPIES,
        "Cast": COPIES,
        "Transpose": COPIES,
        "Reshape": COPIES,
        "Shape": OTHER,
        "SomethingNew": OTHER,
    }
    assert {op: classify.op_class(op) for op in want} == want


def test_kernel_classes_prefer_the_node_then_the_name():
    assert classify.kernel_class("void cutlass::Kernel<...>", "MatMul") == GEMM
    assert classify.kernel_class("fmha_v2_flash_attention_fp16_kernel") == ATTENTION
    assert classify.kernel_class("sm90_xmma_gemm_f16f16_f16f32") == GEMM
    assert classify.kernel_class("void onnxruntime::cuda::SkipLayerNormKernelSmall<half>") == LAYERNORM
    assert classify.kernel_class("void onnxruntime::cuda::_BinaryElementWise<float>") == ELEMENTWISE
    assert classify.kernel_class("void onnxruntime::cuda::_Transpose3D<float>") == COPIES
    # a node type the table lacks falls back to the kernel's name
    assert classify.kernel_class("ampere_sgemm_32x128_nn", "Unknown") == GEMM
    assert classify.kernel_class("mystery_kernel") == OTHER


def _run(ts: float, dur: float) -> dict:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def _node(ts: float, dur: float, op: str, name: str = "n") -> dict:
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_trace_summary_drops_warmup_and_averages_per_run():
    events = [
        {"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 90},
        _node(10, 500, "MatMul"),  # during session set-up: not a run's
        _run(100, 1000),  # warm-up
        _node(110, 800, "MatMul"),
        _run(2000, 100),
        _node(2010, 30, "MatMul"),
        _node(2040, 10, "Add"),
        {"cat": "Node", "name": "x_fence_before", "ts": 2050, "dur": 5, "args": {"op_name": "Add"}},
        _run(3000, 140),
        _node(3010, 50, "MatMul"),
        _node(3060, 20, "Attention"),
        {"cat": "Kernel", "name": "sm90_xmma_gemm", "ts": 3070, "dur": 12, "args": {}},
    ]
    s = trace.summarize(events, warmup=1)
    assert s["runs"] == 2 and s["nodes_per_run"] == 2.0
    assert s["run_ms"] == pytest.approx(0.120) and s["node_ms"] == pytest.approx(0.055)
    assert s["gap_ms"] == pytest.approx(0.065)
    assert s["classes"][GEMM] == {"count": 1.0, "ms": pytest.approx(0.040)}
    assert s["classes"][ATTENTION]["ms"] == pytest.approx(0.010)
    assert s["classes"][ELEMENTWISE]["ms"] == pytest.approx(0.005)
    assert s["top_ops"][0] == ["MatMul", pytest.approx(0.040)]
    assert s["kernels_per_run"] == 0.5 and s["kernel_classes"][GEMM]["ms"] == pytest.approx(0.006)
    with pytest.raises(trace.TraceError, match="no model_run after 3 warm-up"):
        trace.summarize(events, warmup=3)


def _profile(repo: Path, out: Path, *extra: str) -> None:
    from loadtest.cli import main

    argv = ["profile", "--repo", str(repo), "--provider", "cpu", "--out", str(out), "--runs", "5", *extra]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0


def test_profile_command_on_the_tiny_pair(
    tiny_random_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    out = tmp_path / "profile"
    _profile(tiny_random_repo, out, "--variant", "model.onnx,model.opt.onnx,model.gpu.onnx", "--seq", "8")
    data = json.loads((out / "profile.json").read_text())
    assert data["complete"] is True and data["spec"]["seq"] == 8 and data["spec"]["runs"] == 5
    rows = {(r["model"], r["variant"]): r for r in data["rows"]}
    assert set(rows) == {
        (m, v) for m in ("mha-tiny-random", "sha-tiny-random") for v in ("model.onnx", "model.opt.onnx")
    }
    for r in rows.values():
        assert r["runs"] == 5 and r["provider"] == "CPUExecutionProvider"
        assert r["nodes_per_run"] == int(r["nodes_per_run"])  # every profiled run ran the same nodes
        assert r["node_ms"] == pytest.approx(sum(c["ms"] for c in r["classes"].values()))
        assert r["gap_ms"] == pytest.approx(r["run_ms"] - r["node_ms"]) and r["wall_ms"] >= r["run_ms"] * 0.9
    for m, layers in (("mha-tiny-random", 2), ("sha-tiny-random", 8)):
        fused, plain = rows[(m, "model.opt.onnx")], rows[(m, "model.onnx")]
        assert fused["classes"][ATTENTION]["count"] == layers  # one fused Attention per layer
        assert plain["classes"][ATTENTION]["count"] == 0 and plain["nodes_per_run"] > fused["nodes_per_run"]
    ratio = {r["variant"]: r for r in data["ratios"]}
    sha, mha = rows[("sha-tiny-random", "model.onnx")], rows[("mha-tiny-random", "model.onnx")]
    assert ratio["model.onnx"]["nodes_per_run"] == pytest.approx(sha["nodes_per_run"] / mha["nodes_per_run"])
    assert ratio["model.onnx"]["nodes_per_run"] > 2  # 8 layers of small kernels against 2
    assert data["notes"] == [
        f"{m} has no model.gpu.onnx: skipped" for m in ("mha-tiny-random", "sha-tiny-random")
    ]
    table = capsys.readouterr().out.splitlines()
    assert (
        table[0].split()[:4] == ["model", "variant", "provider", "nodes/run"] and len(table) == 1 + 4 + 2 + 2
    )
    assert table[5].startswith("model.onnx: SHA/MHA (sha-tiny-random / mha-tiny-random) wall ")
    md = (out / "report.md").read_text()
    assert "## Where the time goes" in md and "| mha-tiny-random | model.opt.onnx | CPU |" in md


def test_profile_becomes_a_section_of_a_sweep_report(tiny_random_repo: Path, tmp_path: Path):
    from contract.results import write
    from loadtest.report.markdown import write_report

    write(tmp_path, {}, [])  # a sweep's folder (no points needed for the section)
    _profile(tiny_random_repo, tmp_path, "--models", "mha")
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# Load test") and "## Where the time goes" in md
    assert "| mha-tiny-random | model.onnx | CPU |" in md and "sha-tiny-random" not in md
    write_report(tmp_path)  # `loadtest report` keeps it
    assert "## Where the time goes" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--batch", "0"], "--batch must be at least 1"),
        (["--variant", ","], "--variant names no variant"),
        (["--models", "nope"], "no model 'nope'"),
        (["--variant", "model.fp16.onnx"], "nothing to profile: mha-tiny-random has no model.fp16.onnx"),
    ],
)
def test_bad_input_exits_2_with_one_line(tiny_random_repo: Path, tmp_path: Path, capsys, flags, says):
    from loadtest.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(
            ["profile", "--repo", str(tiny_random_repo), "--provider", "cpu", "--out", str(tmp_path), *flags]
        )
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "profile.json").exists()


def _row(provider: str, kernels: float | None, kernel_ms: float | None) -> dict:
    classes = {c: {"count": 1.0, "ms": 0.1} for c in classify.CLASSES}
    return {
        "model": "sha-x",
        "variant": "model.gpu.onnx",
        "provider": provider,
        "nodes_per_run": 100.0,
        "kernels_per_run": kernels,
        "kernel_ms": kernel_ms,
        "wall_ms": 2.0,
        "run_ms": 1.9,
        "node_ms": 0.6,
        "gap_ms": 1.3,
        "classes": classes,
    }


def test_report_section_says_what_cuda_node_time_is():
    from loadtest.profile import render

    spec = {"batch": 1, "seq": 128, "runs": 20, "warmup": 3}
    without = render.section_md(
        {"spec": spec, "rows": [_row("CUDAExecutionProvider", None, None)], "ratios": []}
    )
    assert (
        "| sha-x | model.gpu.onnx | CUDA | 100 | – | 2.000 | 1.900 | 0.600 | 1.300 | – | 0.100 |"
        in without[6]
    )
    assert any("a node's time is host time" in line for line in without)
    kernels = render.section_md(
        {"spec": spec, "rows": [_row("CUDAExecutionProvider", 180.0, 0.9)], "ratios": []}
    )
    assert "| 100 | 180 | 2.000 | 1.900 | 0.600 | 1.300 | 0.900 |" in kernels[6]
    assert not any("host time" in line for line in kernels)
