"""The service on CUDA, end to end over loopback HTTP: what `pytest -m gpu` proves on a GPU host.

The CPU tests cover the API; these check what only a GPU run can: both models load on the CUDA
provider, answers match the CPU service's (fp32, and the fp16 variant within its tolerance),
concurrent requests batched together on the GPU give each caller its own rows, and NVML metrics
are exported. Skipped (with the reason) where ONNX Runtime has no CUDA provider or NVML sees no GPU.
"""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import httpx
import numpy as np
import pytest

from contract.manifest import GPU_FILE, load_manifest
from service.app import create_app
from service.runtime import session as runtime
from service.runtime.shapes import ShapeGrid
from service.settings import ServiceSettings
from tests.service.conftest import serve_in_thread, v2_logits

pytestmark = pytest.mark.gpu

TEXTS = ["a small domesticated carnivore", "a tall perennial woody plant", "move fast", "x"]
MODELS = ("mha-tiny", "sha-tiny")


def _need_cuda() -> None:
    import onnxruntime as ort

    if runtime.CUDA not in ort.get_available_providers() or runtime.gpu_count() == 0:
        pytest.skip("needs onnxruntime's CUDAExecutionProvider and an NVIDIA GPU")


def _settings(repo: Path, provider: str, **kw) -> ServiceSettings:  # noqa: ANN003
    return ServiceSettings(model_repository=repo, provider=provider, require_all_models=True, **kw)


@pytest.fixture(scope="module")
def cpu_logits(tiny_repo: Path) -> dict[str, np.ndarray]:
    _need_cuda()
    with serve_in_thread(create_app(_settings(tiny_repo, "cpu"), gpu_metrics=False)) as base:
        return {m: v2_logits(base, tiny_repo, m, TEXTS) for m in MODELS}


@pytest.mark.parametrize("graph", [False, True], ids=["launches", "cuda-graphs"])
def test_service_on_cuda_matches_cpu_and_reports_provider(
    tiny_repo: Path, cpu_logits: dict, graph: bool
) -> None:
    settings = _settings(tiny_repo, "cuda", cuda_graph=graph)
    with serve_in_thread(create_app(settings, gpu_metrics=True)) as base:
        models = {m["name"]: m for m in httpx.get(f"http://{base}/v1/models").json()["models"]}
        for name in MODELS:
            assert models[name]["state"] == "ready" and models[name]["provider"] == runtime.CUDA
            np.testing.assert_allclose(v2_logits(base, tiny_repo, name, TEXTS), cpu_logits[name], atol=1e-3)
        metrics = httpx.get(f"http://{base}/metrics").text
        assert 'h2h_gpu_memory_used_bytes{gpu="0"}' in metrics
        models_after = {m["name"]: m for m in httpx.get(f"http://{base}/v1/models").json()["models"]}
    for name in MODELS:  # every grid shape captured at start, and no request captured another
        m = load_manifest(tiny_repo / name)
        shapes = len(
            ShapeGrid(settings.max_batch_size, settings.length_bucket, m.max_sequence_length).shapes()
        )
        graphs = models_after[name]["cuda_graphs"]
        assert (graphs or {}).get("graphs") == (shapes if graph else None) and graphs == models[name][
            "cuda_graphs"
        ]
        assert (f'h2h_cuda_graphs{{model="{name}"}} {float(shapes)}' in metrics) == graph


@pytest.mark.parametrize("graph", [False, True], ids=["launches", "cuda-graphs"])
def test_concurrent_requests_batched_on_cuda_keep_their_rows(
    tiny_repo: Path, cpu_logits: dict, graph: bool
) -> None:
    """32 one-row requests at once with a 5 ms window: the GPU runs them as shared padded batches
    (with graphs, also padded to 1, 2, 4 ... rows), and every caller gets its own text's logits."""
    settings = _settings(tiny_repo, "cuda", max_queue_delay_ms=5.0, cuda_graph=graph)
    with serve_in_thread(create_app(settings, gpu_metrics=False)) as base:
        jobs = [(m, i) for m in MODELS for i in range(len(TEXTS))] * 4
        with cf.ThreadPoolExecutor(32) as pool:
            got = list(pool.map(lambda job: v2_logits(base, tiny_repo, job[0], [TEXTS[job[1]]]), jobs))
        for (model, i), logits in zip(jobs, got, strict=True):
            np.testing.assert_allclose(logits[0], cpu_logits[model][i], atol=1e-3)


def test_fp16_variant_on_cuda_within_tolerance(tiny_runs: dict, tmp_path: Path, cpu_logits: dict) -> None:
    """The fp16 export served on CUDA (where fp16 pays) agrees with fp32 on the CPU within the
    tolerance its manifest records."""
    from export.api import export_run
    from export.settings import ExportOptions

    repo = tmp_path / "repo"
    for arch, run_dir in tiny_runs.items():
        export_run(run_dir, repo, name=f"{arch}-tiny", options=ExportOptions(fp16=True))
    settings = _settings(repo, "cuda", variant="model.fp16.onnx")
    with serve_in_thread(create_app(settings, gpu_metrics=False)) as base:
        for name in MODELS:
            tol = load_manifest(repo / name).variants["model.fp16.onnx"].parity.tolerance
            np.testing.assert_allclose(v2_logits(base, repo, name, TEXTS), cpu_logits[name], atol=tol)


def test_fused_fp16_variant_is_proven_at_start_and_served_on_cuda(
    tiny_runs: dict, tmp_path: Path, cpu_logits: dict
) -> None:
    """With model.gpu.onnx exported, the CUDA service proves it against the reference batches at
    start, serves it by default, says so in /v1/models, and answers within its tolerance."""
    from export.api import export_run
    from export.settings import ExportOptions

    repo = tmp_path / "repo"
    for arch, run_dir in tiny_runs.items():
        export_run(run_dir, repo, name=f"{arch}-tiny", options=ExportOptions(gpu=True))
    with serve_in_thread(create_app(_settings(repo, "cuda"), gpu_metrics=False)) as base:
        models = {m["name"]: m for m in httpx.get(f"http://{base}/v1/models").json()["models"]}
        for name in MODELS:
            assert (models[name]["variant"], models[name]["provider"]) == (GPU_FILE, runtime.CUDA)
            assert models[name]["parity"]["status"] == "proven-at-start", models[name]["parity"]
            tol = load_manifest(repo / name).variants[GPU_FILE].parity.tolerance
            np.testing.assert_allclose(v2_logits(base, repo, name, TEXTS), cpu_logits[name], atol=tol)
