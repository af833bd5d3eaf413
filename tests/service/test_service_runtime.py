"""Settings, provider choice and session options (provider list mocked at the boundary only)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from service.runtime import session as runtime
from service.settings import ServiceSettings


class Recorded(Exception):
    pass


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Replace InferenceSession by a recorder that stops right after seeing its arguments."""
    seen: dict = {}

    def fake_session(path, sess_options=None, providers=None, provider_options=None):  # noqa: ANN001, ANN202
        seen.update(
            path=path, sess_options=sess_options, providers=providers, provider_options=provider_options
        )
        raise Recorded

    monkeypatch.setattr(runtime.ort, "InferenceSession", fake_session)
    return seen


def _make(settings: ServiceSettings) -> None:
    with pytest.raises(Recorded):
        runtime.OrtModel(__import__("pathlib").Path("m.onnx"), settings)


def test_settings_env_prefix_and_alias(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("MODEL_REPOSITORY", str(tmp_path))
    monkeypatch.setenv("H2H_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("H2H_PROVIDER", "cpu")
    s = ServiceSettings()
    assert s.model_repository == tmp_path and s.max_batch_size == 7 and s.provider == "cpu"
    monkeypatch.setenv("H2H_MODEL_REPOSITORY", "/elsewhere")
    assert str(ServiceSettings().model_repository) == "/elsewhere"  # prefixed name wins
    assert ServiceSettings(model_repository="x").model_repository.name == "x"
    with pytest.raises(ValueError):
        ServiceSettings(models=["../etc"])
    # what a benchmark or profile builds reads no variable of the server: only what it is given
    from service.runtime.config import RuntimeConfig

    assert RuntimeConfig().provider == "auto" and RuntimeConfig().max_batch_size == 32
    assert RuntimeConfig(provider="cpu", cuda_graph=False).cuda_graph is False


def test_cuda_chosen_with_gpu_and_options_passed(monkeypatch: pytest.MonkeyPatch, captured: dict) -> None:
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    monkeypatch.setattr(runtime, "gpu_count", lambda: 1)
    preloads: list[bool] = []
    monkeypatch.setattr(runtime.ort, "preload_dlls", lambda *a, **k: preloads.append(True), raising=False)
    s = ServiceSettings(
        cuda_device_id=0,
        cuda_arena_extend_strategy="kNextPowerOfTwo",
        cudnn_conv_algo_search="EXHAUSTIVE",
        cuda_mem_limit_bytes=1 << 30,
        intra_op_threads=3,
        inter_op_threads=2,
        graph_optimization_level="extended",
    )
    _make(s)
    assert captured["providers"] == [runtime.CUDA, runtime.CPU]
    cuda_opts = captured["provider_options"][0]
    assert cuda_opts["arena_extend_strategy"] == "kNextPowerOfTwo"
    assert cuda_opts["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert cuda_opts["gpu_mem_limit"] == 1 << 30 and cuda_opts["device_id"] == 0
    assert cuda_opts["use_tf32"] == 0  # fp32 served as export proved it (ORT's default would be TF32)
    assert cuda_opts["enable_cuda_graph"] == 1  # the fast path is the default on CUDA
    so = captured["sess_options"]
    assert so.intra_op_num_threads == 3 and so.inter_op_num_threads == 2
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert preloads == [True]  # CUDA/cuDNN from pip wheels are loaded before the session
    _make(ServiceSettings(cuda_tf32=True))
    assert captured["provider_options"][0]["use_tf32"] == 1
    for off in ({"cuda_graph": False}, {"io_binding": False}):  # the off switches
        _make(ServiceSettings(**off))
        assert "enable_cuda_graph" not in captured["provider_options"][0]


def test_cuda_preload_failure_is_not_fatal(monkeypatch: pytest.MonkeyPatch, captured: dict) -> None:
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    monkeypatch.setattr(runtime, "gpu_count", lambda: 1)

    def broken(*a: object, **k: object) -> None:
        raise OSError("libcudnn.so.9: cannot open shared object file")

    monkeypatch.setattr(runtime.ort, "preload_dlls", broken, raising=False)
    _make(ServiceSettings())
    assert captured["providers"] == [runtime.CUDA, runtime.CPU]


def test_cpu_when_cuda_provider_listed_but_no_gpu(monkeypatch: pytest.MonkeyPatch, captured: dict) -> None:
    # the onnxruntime-gpu wheel lists CUDA even on machines without a GPU
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    monkeypatch.setattr(runtime, "gpu_count", lambda: 0)
    _make(ServiceSettings())
    assert captured["providers"] == [runtime.CPU]


def test_cpu_forced_and_cuda_missing(monkeypatch: pytest.MonkeyPatch, captured: dict) -> None:
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    monkeypatch.setattr(runtime, "gpu_count", lambda: 2)
    _make(ServiceSettings(provider="cpu"))
    assert captured["providers"] == [runtime.CPU]
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CPU])
    with pytest.raises(RuntimeError, match="provider=cuda"):
        runtime.choose_providers(ServiceSettings(provider="cuda"))


def _first_model(repo):  # noqa: ANN001, ANN202
    from contract.manifest import load_manifest, verify_variant

    d = repo / "mha-tiny"
    return verify_variant(d, load_manifest(d))


def test_cpu_session_reports_cpu(tiny_repo) -> None:  # noqa: ANN001
    m = runtime.OrtModel(_first_model(tiny_repo), ServiceSettings(provider="cpu", intra_op_threads=1))
    assert m.provider == runtime.CPU and not m.use_io_binding
    ids = np.array([[2, 3, 4, 0]], dtype=np.int64)
    logits, emb = m.run(ids, (ids != 0).astype(np.int64))
    assert logits.dtype == np.float32 and logits.shape[0] == 1 and emb.shape[0] == 1


@pytest.mark.gpu
def test_cuda_io_binding_matches_cpu(tiny_repo) -> None:  # noqa: ANN001
    if runtime.CUDA not in ort.get_available_providers() or runtime.gpu_count() == 0:
        pytest.skip("needs CUDAExecutionProvider and a GPU")
    path = _first_model(tiny_repo)
    gpu = runtime.OrtModel(path, ServiceSettings(provider="cuda"))
    cpu = runtime.OrtModel(path, ServiceSettings(provider="cpu"))
    assert gpu.provider == runtime.CUDA and gpu.use_io_binding
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 20, size=(4, 9), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    for a, b in zip(gpu.run(ids, mask), cpu.run(ids, mask), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_gpu_metrics_only_with_nvml() -> None:
    from prometheus_client import generate_latest

    from service.metrics import EngineMetrics

    text = generate_latest(EngineMetrics(gpu=True).registry).decode()
    if runtime.gpu_count() == 0:
        assert "h2h_gpu_" not in text  # silently absent without NVML / a GPU
    else:
        assert 'h2h_gpu_memory_total_bytes{gpu="0"}' in text
