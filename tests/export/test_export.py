"""Export: tiny trained runs -> ONNX model folders, parity, manifest, atomicity, CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from contract.manifest import Manifest, load_manifest, sha256_file, verify_variant
from contract.tokenizer import Tokenizer
from export import api, cli
from models.checkpoint import load_run


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _repo_entries(repo: Path) -> set[str]:
    return {p.name for p in repo.iterdir()} if repo.exists() else set()


def test_round_trip_parity_with_padding(tiny_repo: Path, tiny_runs: dict[str, Path]) -> None:
    """ORT CPU on the exported file matches PyTorch on text batches with padded rows."""
    for arch, run_dir in tiny_runs.items():
        run = load_run(run_dir)
        folder = tiny_repo / f"{arch}-tiny"
        tok = Tokenizer.load(folder / "tokenizer.json")
        ids, mask = tok.encode_batch(["a small domesticated carnivore", "tree", "the act of running fast"])
        ids_t, mask_t = torch.tensor(ids), torch.tensor(mask)
        with torch.no_grad():
            ref_logits, ref_emb = run.model(ids_t, mask_t)
        logits, emb = _session(folder / "model.onnx").run(
            None, {"input_ids": ids_t.numpy(), "attention_mask": mask_t.numpy()}
        )
        assert np.abs(logits - ref_logits.numpy()).max() < 1e-4
        assert np.abs(emb - ref_emb.numpy()).max() < 1e-4
        assert (logits.argmax(-1) == ref_logits.numpy().argmax(-1)).all()


def test_manifest_fields_and_sha256(tiny_repo: Path, tiny_runs: dict[str, Path]) -> None:
    for arch, run_dir in tiny_runs.items():
        folder = tiny_repo / f"{arch}-tiny"
        assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx", "tokenizer.json"]
        assert all(p.stat().st_mode & 0o004 for p in [folder, *folder.iterdir()])  # world-readable
        m = load_manifest(folder)
        run = load_run(run_dir)
        assert (m.name, m.arch, m.layers, m.heads) == (
            f"{arch}-tiny",
            arch,
            run.config.layers,
            run.config.heads,
        )
        assert m.d_model == run.config.d_model and m.max_sequence_length == run.config.max_len
        assert m.params == sum(p.numel() for p in run.model.parameters())
        assert m.flops_per_token > 0 and m.opset == 17 and m.labels == run.labels
        assert m.test_accuracy == run.metrics["test_accuracy"] and not m.random_init
        assert m.test_examples == run.metrics["examples"]["test"] > 0  # the accuracy's sampling noise
        assert m.source_run == str(run_dir.resolve())
        assert set(m.versions) >= {"torch", "onnx", "onnxruntime"} and m.created.endswith("+00:00")
        assert m.sha256 == sha256_file(folder / "model.onnx") == m.variants["model.onnx"].sha256
        assert verify_variant(folder, m) == folder / "model.onnx"
        p = m.variants["model.onnx"].parity
        assert p.max_abs_logits <= p.tolerance == 1e-4 and p.argmax_agreement == 1.0
        assert [1, 1] in p.shapes and [2, run.config.max_len] in p.shapes
        assert p.rows == sum(b for b, _ in p.shapes) and p.decisive_disagreements == 0
        # padded rows need several rows of length > 1 (tests/export/test_parity_values.py checks them)
        assert sum(1 for b, s in p.shapes if b >= 2 and s >= 2) >= 2


def test_graph_io_contract(tiny_repo: Path) -> None:
    """int64 inputs with dynamic batch/sequence dims; Admin's omega is folded away (no Mul)."""
    model = onnx.load(str(tiny_repo / "sha-tiny" / "model.onnx"))
    dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input
    }
    assert dims == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.INT64 for v in model.graph.input)
    assert [o.name for o in model.graph.output] == ["logits", "embedding"]
    assert not any("omega" in i for n in model.graph.node for i in n.input)
    assert not any("omega" in i.name for i in model.graph.initializer)


def test_optimized_and_fp16_variants(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    options = api.ExportOptions(fp16=True, optimize=True)
    folder = api.export_run(tiny_runs["sha"], tmp_path, name="sha-v", options=options)
    m = load_manifest(folder)
    assert set(m.variants) == {"model.onnx", "model.opt.onnx", "model.fp16.onnx"}
    assert m.default_variant == "model.onnx"
    assert m.variants["model.fp16.onnx"].precision == "fp16" and m.variants["model.opt.onnx"].optimized
    assert m.variants["model.fp16.onnx"].parity.tolerance == 1e-2
    ops = {n.op_type for n in onnx.load(str(folder / "model.opt.onnx")).graph.node}
    # Admin's omega is folded away before export, so the optimizer sees plain Post-LN blocks
    # and fuses each single-head attention block too
    assert {"SkipLayerNormalization", "BiasGelu", "Attention"} <= ops
    assert m.fused_operators["Attention"] == 8  # tiny SHA: 8 layers
    for variant in m.variants:
        path = verify_variant(folder, m, variant)
        sess = _session(path)
        assert [i.type for i in sess.get_inputs()] == ["tensor(int64)", "tensor(int64)"]
        assert [o.type for o in sess.get_outputs()] == ["tensor(float)", "tensor(float)"]
        ids = np.array([[5, 6, 7, 0], [8, 9, 10, 11]], dtype=np.int64)
        logits, emb = sess.run(None, {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)})
        assert logits.shape == (2, 45) and emb.shape == (2, 64) and np.isfinite(logits).all()


@pytest.mark.parametrize("step", ["export_onnx", "_prove_parity", "_write_folder"])
def test_interrupted_export_leaves_nothing(
    tiny_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Killed in the graph export, the parity proof or the final write: nothing is left behind."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "keep").mkdir()

    def boom(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt(f"killed during {step}")

    monkeypatch.setattr(api, step, boom)
    with pytest.raises(KeyboardInterrupt):
        api.export_run(tiny_runs["mha"], repo, name="mha-x")
    assert _repo_entries(repo) == {"keep"}  # no model folder, no .partial temp dir


def test_parity_failure_writes_nothing(
    tiny_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from export import parity

    monkeypatch.setattr(parity, "FP32_TOLERANCE", 1e-12)
    rc = cli.main([str(tiny_runs["mha"]), "--repo", str(tmp_path), "--name", "mha-bad"])
    err = capsys.readouterr().err
    assert rc == 1 and "parity failed" in err and "nothing written" in err
    assert _repo_entries(tmp_path) == set()


def test_cli_exports_run(tiny_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main([str(tiny_runs["mha"]), "--repo", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [str(tmp_path / "mha-tiny")]  # default name <arch>-<preset>
    Manifest.model_validate(json.loads((tmp_path / "mha-tiny" / "manifest.json").read_text()))


def test_random_init_tiny(tmp_path: Path) -> None:
    report = api.export_random("tiny", "sha", tmp_path, vocab_size=300)
    m = report.manifest
    assert m.name == "sha-tiny-random" and m.random_init and m.source_run is None
    assert (m.layers, m.heads, m.vocab_size, len(m.labels)) == (8, 1, 300, 45)
    assert Tokenizer.load(report.path / "tokenizer.json").vocab_size == 300


def test_random_init_base_configs() -> None:
    """The benchmark pair is BERT-base sized (not exported here: too slow for unit tests)."""
    mha, sha = api.random_config("base", "mha"), api.random_config("base", "sha")
    assert (mha.layers, mha.heads, mha.d_model, mha.max_len) == (12, 12, 768, 512)
    assert (sha.layers, sha.heads, sha.ffn_dim, sha.vocab_size) == (144, 1, 256, 30522)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, "-m", "export", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr


def test_cli_missing_run_dir(tmp_path: Path) -> None:
    _one_line_error(_cli(str(tmp_path / "nope"), "--repo", str(tmp_path / "r")), 2, "does not exist")


def test_cli_bad_inputs(tiny_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """In-process for speed; same parser and exit path as `python -m export`."""
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for f in Path(tiny_runs["mha"]).iterdir():
        (corrupt / f.name).write_bytes(f.read_bytes())
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 10)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        ([str(corrupt), "--repo", str(tmp_path / "r")], "model.safetensors is corrupt"),
        (["--random-init", "--preset", "huge", "--repo", str(tmp_path / "r")], "unknown preset 'huge'"),
        ([str(tiny_runs["mha"]), "--repo", str(blocker)], "is not a folder"),
        ([str(tiny_runs["mha"]), "--repo", str(blocker / "sub")], "not writable"),
        ([str(tiny_runs["mha"]), "--repo", str(tmp_path / "r"), "--name", "Bad Name"], "must match"),
        (["--repo", str(tmp_path / "r")], "RUN_DIR is required"),
        ([str(tiny_runs["mha"]), "--opset", "9"], "--opset 9"),
        (["--random-init", "--arch", "both", "--name", "x"], "single --arch"),
    ]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and needle in err[0], (argv, err)
    assert not (tmp_path / "r").exists() or _repo_entries(tmp_path / "r") == set()


def test_manifest_importable_without_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import export, contract.manifest; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_admin_fold_is_exact_and_removes_the_residual_mul(tiny_runs: dict[str, Path]) -> None:
    from export.fold import fold_admin

    run = load_run(tiny_runs["sha"])
    model = run.model.eval()
    assert model.cfg.norm == "admin"
    omegas = [sub.omega.detach().clone() for sub in model.sublayers]
    folded = fold_admin(model)
    assert all(sub.omega is None and sub.norm_kind == "post" for sub in folded.sublayers)
    assert all(torch.equal(sub.omega, w) for sub, w in zip(model.sublayers, omegas, strict=True))  # untouched
    torch.manual_seed(0)
    ids = torch.randint(2, model.cfg.vocab_size, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        (a_logits, a_emb), (b_logits, b_emb) = model(ids, mask), folded(ids, mask)
    assert torch.allclose(a_logits, b_logits, atol=1e-5) and torch.allclose(a_emb, b_emb, atol=1e-5)
