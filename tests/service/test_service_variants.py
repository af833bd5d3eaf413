"""The best proven variant per model: service.runtime.variants' rules, and the start-up proof on CUDA with
ONNX Runtime's session faked at the boundary (a real CPU session under a CUDA name, its answers
kept right or made wrong), through the repository loader and /v1/models."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from contract.manifest import CPU_PROVIDER, CUDA_PROVIDER, GPU_FILE, load_manifest
from export.api import export_random
from export.settings import ExportOptions
from service.app import create_app
from service.engine import repository
from service.runtime import session as runtime
from service.runtime import variants
from tests.conftest import cpu_service_settings
from tests.service.conftest import serve_in_thread

FP32 = "model.onnx"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("variants_repo")
    export_random("tiny", "sha", repo, name="sha-tiny", options=ExportOptions(gpu=True, fp16=True))
    return repo


class FakeRuntime:
    """A loaded variant as selection sees it: a provider name and answers (right or shifted)."""

    def __init__(self, path: Path, provider: str, shift: float) -> None:
        from export.parity import runner, session

        self.provider, self.shift, self._run = provider, shift, runner(session(path))

    def run(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, emb = self._run(ids, mask)
        return logits + self.shift, emb


def _select(repo: Path, provider: str, requested: str | None = None, allow: bool = False, shift: float = 0.0):
    from contract import reference

    m = load_manifest(repo / "sha-tiny")
    opened: list[str] = []

    def open_variant(name: str) -> FakeRuntime:
        opened.append(name)
        return FakeRuntime(repo / m.name / name, provider, shift)

    def batches() -> list:
        return reference.load(repo / m.name / m.reference)

    rt, served = variants.select(m, provider, requested, allow, open_variant, batches)
    return served, opened


def test_preference_cuda_prefers_the_fused_variant_cpu_keeps_the_default(repo: Path) -> None:
    m = load_manifest(repo / "sha-tiny")
    assert variants.preference(m, CUDA_PROVIDER, None) == [GPU_FILE, FP32]
    assert variants.preference(m, CPU_PROVIDER, None) == [FP32]
    assert variants.preference(m, CUDA_PROVIDER, "model.fp16.onnx") == ["model.fp16.onnx"]
    assert variants.preference(m, CUDA_PROVIDER, "model.nope.onnx") == [GPU_FILE, FP32]


def test_manifests_older_than_parity_pending_count_fp16_as_unproven_on_cuda(repo: Path) -> None:
    m = load_manifest(repo / "sha-tiny")
    legacy = {k: v.model_copy(update={"parity_pending": None}) for k, v in m.variants.items()}
    assert variants.pending(legacy["model.fp16.onnx"]) == [CUDA_PROVIDER]
    assert variants.pending(legacy[FP32]) == []


def test_cuda_serves_the_fused_variant_once_proven_at_start(repo: Path) -> None:
    served, opened = _select(repo, CUDA_PROVIDER)
    assert opened == [GPU_FILE] and served.variant == GPU_FILE and served.status == "proven-at-start"
    assert served.measured_on == CUDA_PROVIDER and 0 < served.max_abs_logits <= served.tolerance
    assert served.fallback is None


def test_cuda_falls_back_to_fp32_when_the_proof_fails_and_says_why_once(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=variants.__name__):
        served, opened = _select(repo, CUDA_PROVIDER, shift=0.5)
    assert opened == [GPU_FILE, FP32] and served.variant == FP32 and served.status == "proven"
    assert served.measured_on == CPU_PROVIDER and "failed parity on CUDAExecutionProvider" in served.fallback
    assert [r.getMessage() for r in caplog.records if GPU_FILE in r.getMessage()] == [
        f"sha-tiny: not serving {GPU_FILE}: {served.fallback}"
    ]


def test_named_variant_unproven_on_cuda_is_refused_unless_allowed(repo: Path) -> None:
    with pytest.raises(variants.UnprovenVariant) as err:
        _select(repo, CUDA_PROVIDER, requested=GPU_FILE, shift=0.5)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"H2H_VARIANT={GPU_FILE}: ") and "H2H_ALLOW_UNPROVEN=1" in msg
    served, _ = _select(repo, CUDA_PROVIDER, requested=GPU_FILE, allow=True, shift=0.5)
    assert (served.variant, served.status) == (GPU_FILE, "unproven")


def test_named_variant_proven_at_start_is_served(repo: Path) -> None:
    served, opened = _select(repo, CUDA_PROVIDER, requested="model.fp16.onnx")
    assert opened == ["model.fp16.onnx"] and served.status == "proven-at-start"


def test_cpu_serves_what_export_proved_there(repo: Path) -> None:
    served, opened = _select(repo, CPU_PROVIDER)
    assert (opened, served.status, served.measured_on) == ([FP32], "proven", CPU_PROVIDER)
    # asked for, the fused variant is proven on CPU too (export measured it there)
    served, _ = _select(repo, CPU_PROVIDER, requested=GPU_FILE)
    assert (served.variant, served.status) == (GPU_FILE, "proven")


def test_pending_variant_without_reference_batches_is_unproven(repo: Path) -> None:
    m = load_manifest(repo / "sha-tiny").model_copy(update={"reference": None})
    rt = FakeRuntime(repo / m.name / GPU_FILE, CUDA_PROVIDER, 0.0)
    with pytest.raises(variants.UnprovenVariant, match="no reference batches"):
        variants.prove(m, GPU_FILE, rt, lambda: [])


# ---- the repository loader and the API, with ONNX Runtime's session faked at the boundary ----


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, shift: float) -> None:
    """InferenceSession runs on CPU but reports CUDA, with logits shifted by `shift`."""
    real = ort.InferenceSession

    class FakeCudaSession(real):  # type: ignore[misc, valid-type]
        def __init__(self, path: str, sess_options=None, providers=None, provider_options=None) -> None:  # noqa: ANN001
            super().__init__(path, sess_options, providers=[CPU_PROVIDER])

        def get_providers(self) -> list[str]:
            return [CUDA_PROVIDER, CPU_PROVIDER]

        def run(self, names, feed, run_options=None):  # noqa: ANN001, ANN201
            logits, emb = super().run(names, feed, run_options)
            return [logits + np.float32(shift), emb]

    monkeypatch.setattr(runtime.ort, "InferenceSession", FakeCudaSession)
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [CUDA_PROVIDER, CPU_PROVIDER])
    monkeypatch.setattr(runtime, "preload_cuda_libraries", lambda: None)


def _cuda_settings(repo: Path, **kw):  # noqa: ANN003, ANN202
    return cpu_service_settings(repo, provider="cuda", io_binding=False, cuda_graph=False, **kw)


@pytest.mark.parametrize(
    ("shift", "variant", "status"), [(0.0, GPU_FILE, "proven-at-start"), (0.5, FP32, "proven")]
)
def test_v1_models_shows_the_served_variant_and_its_parity(
    repo: Path, monkeypatch: pytest.MonkeyPatch, shift: float, variant: str, status: str
) -> None:
    _fake_cuda(monkeypatch, shift)
    with serve_in_thread(create_app(_cuda_settings(repo), gpu_metrics=False)) as base:
        (model,) = httpx.get(f"http://{base}/v1/models").json()["models"]
        config = httpx.get(f"http://{base}/v2/models/sha-tiny/config").json()
    assert (model["state"], model["provider"], model["variant"]) == ("ready", CUDA_PROVIDER, variant)
    assert model["parity"]["status"] == status and model["parity"]["provider"] == CUDA_PROVIDER
    assert (model["parity"]["fallback"] is None) == (shift == 0.0)
    assert config["parameters"]["variant"]["string_value"] == variant
    assert config["parameters"]["parity"]["string_value"] == status


def test_named_unproven_variant_fails_the_model_with_one_line(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_cuda(monkeypatch, 0.5)
    (folder,) = repository.discover(repo)
    assert isinstance(folder, Path)
    loaded = repository.load(folder, _cuda_settings(repo, variant=GPU_FILE, allow_unproven=True))
    assert isinstance(loaded, repository.LoadedModel)
    assert loaded.served.status == "unproven" and loaded.variant == GPU_FILE
    failed = repository.load(folder, _cuda_settings(repo, variant=GPU_FILE))  # a new result: no parity kept
    assert isinstance(failed, repository.FailedModel)
    assert failed.error.startswith(
        "UnprovenVariant: H2H_VARIANT=model.gpu.onnx: model.gpu.onnx failed parity"
    )
    assert "\n" not in failed.error and failed.error.endswith("set H2H_ALLOW_UNPROVEN=1 to serve it anyway")
