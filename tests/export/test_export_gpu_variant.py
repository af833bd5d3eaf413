"""model.gpu.onnx: ONNX Runtime's BERT fusions chosen for CUDA, then fp16 with fp32 outputs.

Checked on CPU: the fusions fire on both shapes (one Attention per attention layer, skip +
LayerNorm and bias + GELU fused), weights are fp16 while the graph's I/O keeps the contract,
the manifest records counts and where parity stands, and the reference batches the service
proves it with on CUDA hold PyTorch's answers, padded rows included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from contract import reference
from contract.manifest import CPU_PROVIDER, CUDA_PROVIDER, GPU_FILE, Manifest, load_manifest
from export import cli
from export.api import REFERENCE_FILE, export_random, export_run
from export.onnx_export import check_contract
from export.parity import runner, session
from export.settings import ExportOptions

ARCHES = ("mha", "sha")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-init tiny MHA (2L-4H) and SHA (8L-1H) exported with the fused fp16 variant."""
    repo = tmp_path_factory.mktemp("gpu_repo")
    for arch in ARCHES:
        export_random("tiny", arch, repo, name=f"{arch}-tiny", options=ExportOptions(gpu=True))
    return repo


def _fused_counts(m: Manifest) -> dict[str, int]:
    return m.variants[GPU_FILE].operators


@pytest.mark.parametrize("arch", ARCHES)
def test_fusions_fire_once_per_layer(repo: Path, arch: str) -> None:
    m = load_manifest(repo / f"{arch}-tiny")
    ops = _fused_counts(m)
    # one fused Attention per attention layer; every residual Add + LayerNorm fused (2 per layer);
    # one bias + GELU per feed-forward; only the embedding LayerNorm has no residual to fuse
    assert ops["Attention"] == m.layers
    assert ops["SkipLayerNormalization"] == 2 * m.layers
    assert ops["BiasGelu"] == m.layers
    assert ops["LayerNormalization"] == 1
    # q/k/v packed into the Attention node: left are the output projection, FFN up and down
    assert ops["MatMul"] == 3 * m.layers and ops["Gemm"] == 1  # + the classifier
    assert "Softmax" not in ops and "Erf" not in ops and "ReduceMean" not in ops
    graph = onnx.load(str(repo / m.name / GPU_FILE)).graph
    assert ops["total"] == len(graph.node)
    assert m.fused_operators == {k: ops[k] for k in m.fused_operators}


def test_fusions_fire_on_a_trained_admin_sha(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    """A trained Admin model (ω != 1, folded by export) fuses like a plain Post-LN one."""
    path = export_run(tiny_runs["sha"], tmp_path, name="sha-tiny", options=ExportOptions(gpu=True))
    m = load_manifest(path)
    assert m.norm == "admin" and _fused_counts(m)["Attention"] == m.layers
    assert _fused_counts(m)["SkipLayerNormalization"] == 2 * m.layers


@pytest.mark.parametrize("arch", ARCHES)
def test_fp16_weights_with_fp32_outputs(repo: Path, arch: str) -> None:
    m = load_manifest(repo / f"{arch}-tiny")
    path = repo / m.name / GPU_FILE
    graph = onnx.load(str(path)).graph
    floats = [
        t.data_type
        for t in graph.initializer
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    ]
    assert floats and set(floats) == {onnx.TensorProto.FLOAT16}
    check_contract(path, d_model=m.d_model, num_labels=len(m.labels))  # int64 in, fp32 out
    logits, emb = runner(session(path))(np.array([[2, 3, 4]]), np.ones((1, 3), dtype=np.int64))
    assert logits.dtype == np.float32 and emb.shape == (1, m.d_model)


@pytest.mark.parametrize("arch", ARCHES)
def test_manifest_records_parity_cpu_measured_cuda_pending(repo: Path, arch: str) -> None:
    m = load_manifest(repo / f"{arch}-tiny")
    gpu, fp32 = m.variants[GPU_FILE], m.variants["model.onnx"]
    assert (gpu.precision, gpu.optimized, gpu.parity_pending) == ("fp16", True, [CUDA_PROVIDER])
    assert gpu.parity.provider == CPU_PROVIDER and 0 < gpu.parity.max_abs_logits <= gpu.parity.tolerance
    # this onnxruntime's CPU provider has no fp16 Attention kernel: it runs it in fp32, so the CPU
    # measurement cannot stand for CUDA's fp16 arithmetic
    assert "Attention" in gpu.parity.emulated_ops
    assert fp32.parity_pending == [] and fp32.parity.emulated_ops == []
    assert m.reference == REFERENCE_FILE and m.default_variant == "model.onnx"
    assert set(m.export_seconds) == {"export", "gpu", "parity"}


def test_reference_batches_hold_pytorch_answers_with_padded_rows(repo: Path) -> None:
    m = load_manifest(repo / "sha-tiny")
    batches = reference.load(repo / m.name / REFERENCE_FILE)
    assert [b.shape for b in batches] == m.variants[GPU_FILE].parity.shapes
    assert any((b.attention_mask == 0).any() for b in batches)  # padded rows are part of the proof
    fp32 = reference.measure(batches, runner(session(repo / m.name / "model.onnx")), 1e-4, CPU_PROVIDER)
    assert fp32.max_abs_logits < 1e-4 and fp32.rows == sum(len(b.logits) for b in batches)
    assert reference.failure(fp32) is None


def test_exports_without_fp16_variants_ship_no_reference(tiny_repo: Path) -> None:
    m = load_manifest(tiny_repo / "mha-tiny")
    assert m.reference is None and not (tiny_repo / "mha-tiny" / REFERENCE_FILE).exists()


def test_cli_gpu_flag_reaches_the_options() -> None:
    args = cli.build_parser().parse_args(["--random-init", "--preset", "tiny", "--gpu"])
    assert cli._options(args).gpu is True
    assert cli._options(cli.build_parser().parse_args(["--random-init"])).gpu is ExportOptions().gpu is False


def test_drop_identities_rewires_in_one_pass_and_keeps_the_answers(repo: Path, tmp_path: Path) -> None:
    """The random-init graph shares equal initializers through Identity nodes (zero biases, unit
    LayerNorm weights); dropping them before the optimizer leaves the function unchanged."""
    from export.optimize import drop_identities

    src = repo / "sha-tiny" / "model.onnx"
    model = onnx.load(str(src))
    before = sum(n.op_type == "Identity" for n in model.graph.node)
    assert before > 0 and drop_identities(model) == before
    assert not any(n.op_type == "Identity" for n in model.graph.node)
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "flat.onnx"))
    batches = reference.load(repo / "sha-tiny" / REFERENCE_FILE)
    flat = reference.measure(batches, runner(session(tmp_path / "flat.onnx")), 1e-4, CPU_PROVIDER)
    assert flat.max_abs_logits < 1e-4 and reference.failure(flat) is None
