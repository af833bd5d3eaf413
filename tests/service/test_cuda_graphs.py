"""service.cuda_graphs and service.shapes: the shape set is bounded and known from the settings,
the padding into it (rows and length) changes no real row's answer (checked on the CPU with the real
tiny models), every shape is captured before the model serves (CUDA mocked at ONNX Runtime's
boundary: tests/service/fake_cuda.py), and on a GPU graphs answer what the CPU answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contract.manifest import load_manifest, verify_variant
from service.runtime import cuda_graphs
from service.runtime import session as runtime
from service.runtime.cuda_graphs import CAPTURE_RUNS, pad_batch, padded_rows
from service.runtime.shapes import ShapeGrid
from service.settings import ServiceSettings
from tests.service import fake_cuda


def _path(repo: Path, model: str) -> Path:
    d = repo / model
    return verify_variant(d, load_manifest(d))


def test_shape_grid_is_bounded_and_known_from_the_settings() -> None:
    grid = ShapeGrid(max_rows=32, bucket_width=16, max_length=64)
    assert grid.row_sizes() == [1, 2, 4, 8, 16, 32] and grid.lengths() == [16, 32, 48, 64]
    assert len(grid.shapes()) == 24  # (log2(32) + 1) x 64 / 16
    every = {grid.padded(r, n) for r in range(1, 33) for n in range(1, 65)}
    assert every == set(grid.shapes())  # every batch within the limits lands on a listed shape
    assert all(grid.padded(r, n) >= (r, n) for r in range(1, 33) for n in range(1, 65))
    assert grid.padded(3, 17) == (4, 32) and grid.padded(1, 1) == (1, 16)
    odd = ShapeGrid(max_rows=24, bucket_width=16, max_length=40)  # caps: never beyond the limits
    assert odd.row_sizes() == [1, 2, 4, 8, 16, 24] and odd.lengths() == [16, 32, 40]
    assert odd.padded(17, 33) == (24, 40)
    assert odd.padded(30, 50) == (30, 50)  # beyond the grid: its own size, never padded down


def test_padded_rows_are_powers_of_two() -> None:
    assert [padded_rows(n) for n in (1, 2, 3, 4, 5, 8, 9, 31, 32)] == [1, 2, 4, 4, 8, 8, 16, 32, 32]


def test_pad_rows_are_pad_tokens_attending_to_one_position() -> None:
    ids = np.array([[5, 6, 0], [7, 0, 0], [8, 9, 10]])
    mask = (ids != 0).astype(np.int64)
    pids, pmask = pad_batch(ids, mask, 4)
    assert pids.dtype == pmask.dtype == np.int64 and pids.shape == pmask.shape == (4, 3)
    np.testing.assert_array_equal(pids[:3], ids)
    np.testing.assert_array_equal(pmask[:3], mask)
    assert pids[3].tolist() == [0, 0, 0] and pmask[3].tolist() == [1, 0, 0]
    same_ids, same_mask = pad_batch(ids, mask, 3)
    assert same_ids.shape == (3, 3) and same_mask.flags.c_contiguous


@pytest.mark.parametrize("model", ["mha-tiny", "sha-tiny"])
def test_padding_leaves_real_rows_unchanged(tiny_repo: Path, model: str) -> None:
    """The real rows of a padded batch get the logits they get alone (CPU, the exported graph)."""
    d = tiny_repo / model
    m = runtime.OrtModel(
        verify_variant(d, load_manifest(d)), ServiceSettings(provider="cpu", intra_op_threads=1)
    )
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 50, size=(3, 7), dtype=np.int64)
    ids[1, 4:] = 0
    mask = (ids != 0).astype(np.int64)
    alone_logits, alone_emb = m.run(ids, mask)
    padded_logits, padded_emb = m.run(*pad_batch(ids, mask, padded_rows(3)))
    assert padded_logits.shape[0] == 4 and np.isfinite(padded_logits).all() and np.isfinite(padded_emb).all()
    np.testing.assert_allclose(padded_logits[:3], alone_logits, atol=1e-5)
    np.testing.assert_allclose(padded_emb[:3], alone_emb, atol=1e-5)


@pytest.mark.parametrize("model", ["mha-tiny", "sha-tiny"])
def test_length_padding_to_the_bucket_edge_leaves_real_rows_unchanged(tiny_repo: Path, model: str) -> None:
    """A row's logits are the same whether its batch is padded to its own length or to the bucket's
    upper edge (masked positions get exactly zero attention weight: the additive mask underflows)."""
    m = runtime.OrtModel(_path(tiny_repo, model), ServiceSettings(provider="cpu", intra_op_threads=1))
    rng = np.random.default_rng(2)
    ids = rng.integers(2, 50, size=(3, 9), dtype=np.int64)
    ids[2, 5:] = 0
    mask = (ids != 0).astype(np.int64)
    own = m.run(ids, mask)
    for rows, length in ((3, 16), (4, 16), (4, 64)):
        padded = m.run(*pad_batch(ids, mask, rows, length))
        for a, b in zip(padded, own, strict=True):
            assert a.shape[0] == rows and np.isfinite(a).all()
            np.testing.assert_allclose(a[:3], b, atol=1e-5)


def test_capture_all_captures_every_shape_before_serving_and_replays_them(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuda = fake_cuda.install(monkeypatch)
    process_bytes = iter([100 << 20, 164 << 20])  # NVML: this process's device memory, before and after
    monkeypatch.setattr(cuda_graphs.nvml, "process_memory", lambda device_id: next(process_bytes))
    settings = ServiceSettings(provider="cuda", max_batch_size=4, length_bucket=16)
    m = runtime.OrtModel(_path(tiny_repo, "sha-tiny"), settings, max_length=40)
    assert m.graphs is not None and m.padded_shape(3, 17) == (4, 32)
    assert cuda.sessions[0].provider_options[0]["enable_cuda_graph"] == 1
    memory = m.warm_up()
    shapes = [(r, n) for n in (16, 32, 40) for r in (1, 2, 4)]
    runs = cuda.runs("sha-tiny")
    assert [shape for _, shape in runs] == [s for s in shapes for _ in range(CAPTURE_RUNS)]
    ids_by_shape = {shape: graph for graph, shape in runs}
    assert len(set(ids_by_shape.values())) == len(shapes) and "0" not in ids_by_shape.values()
    assert memory is not None and memory.graphs == len(shapes) == len(m.graphs.shapes)
    assert memory.capture_growth_bytes == 64 << 20
    out = m.graphs._outputs
    row_bytes = sum(4 * int(np.prod(out[name].shape[1:])) for name in ("logits", "embedding"))
    assert memory.bound_bytes == sum(r * (2 * 8 * n + row_bytes) for r, n in shapes)
    # serving: a 3 x 9 batch replays the (4, 16) graph and answers what the CPU answers alone
    rng = np.random.default_rng(3)
    ids = rng.integers(2, 50, size=(3, 9), dtype=np.int64)
    mask = np.ones_like(ids)
    cpu = runtime.OrtModel(_path(tiny_repo, "sha-tiny"), ServiceSettings(provider="cpu", intra_op_threads=1))
    for a, b in zip(m.run(ids, mask), cpu.run(ids, mask), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert runs[-1] != cuda.runs("sha-tiny")[-1] == (ids_by_shape[(4, 16)], (4, 16))
    assert m.graph_memory() == memory  # no shape captured after the warm-up


def test_capture_failure_names_the_shape(tiny_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda.install(monkeypatch)
    cuda.fail_at["mha-tiny"] = (2, 32)
    m = runtime.OrtModel(
        _path(tiny_repo, "mha-tiny"), ServiceSettings(provider="cuda", max_batch_size=4), max_length=64
    )
    with pytest.raises(RuntimeError, match=r"CUDA graph capture failed at batch 2 x 32: CUDA failure 2"):
        m.warm_up()


def test_graphs_off_switches_keep_plain_runs(tiny_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """H2H_CUDA_GRAPH=false or H2H_IO_BINDING=false on CUDA: no graphs, batches at their own shape."""
    cuda = fake_cuda.install(monkeypatch)
    for off in ({"cuda_graph": False}, {"io_binding": False}):
        m = runtime.OrtModel(
            _path(tiny_repo, "mha-tiny"), ServiceSettings(provider="cuda", **off), max_length=64
        )
        assert m.graphs is None and m.graph_memory() is None and m.padded_shape(3, 17) == (3, 17)
        assert "enable_cuda_graph" not in cuda.sessions[-1].provider_options[0]


def test_cpu_keeps_every_batch_at_its_own_shape(tiny_repo: Path) -> None:
    m = runtime.OrtModel(
        _path(tiny_repo, "mha-tiny"), ServiceSettings(provider="cpu", intra_op_threads=1), max_length=64
    )
    assert ServiceSettings().cuda_graph and m.graphs is None and m.padded_shape(3, 17) == (3, 17)
    assert m.warm_up() is None and m.graph_memory() is None


TEXTS = ["a small domesticated carnivore", "a tall perennial woody plant", "move fast", "x"]


def _cuda_service(repo: Path, **kw: object) -> ServiceSettings:
    base: dict = dict(model_repository=repo, provider="cuda", max_batch_size=4, intra_op_threads=1)
    return ServiceSettings(**{**base, **kw})


def test_service_on_cuda_captures_every_graph_before_ready_and_reports_them(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the default settings on (mocked) CUDA: every grid shape of both models is captured while
    the service is not yet ready; then answers match the CPU service's through the padded graphs,
    and /v1/models and /metrics report each model's graphs and bound bytes."""
    import httpx

    from service.app import create_app
    from tests.service.conftest import serve_in_thread, v2_logits

    with serve_in_thread(create_app(_cuda_service(tiny_repo, provider="cpu"), gpu_metrics=False)) as base:
        cpu = {m: v2_logits(base, tiny_repo, m, TEXTS) for m in ("mha-tiny", "sha-tiny")}
    cuda = fake_cuda.install(monkeypatch)
    app = create_app(_cuda_service(tiny_repo, require_all_models=True), gpu_metrics=False)
    ready_at_run: list[bool] = []
    cuda.on_run = lambda model, shape: ready_at_run.append(app.state.registry.ready)
    with serve_in_thread(app) as base:
        started = json.loads(app.state.registry.engine.engine.summary())[
            "models"
        ]  # the start line, printed once
        assert httpx.get(f"http://{base}/v2/health/ready").status_code == 200
        captured = len(ready_at_run)
        models = {m["name"]: m for m in httpx.get(f"http://{base}/v1/models").json()["models"]}
        metrics = httpx.get(f"http://{base}/metrics").text
        for name, want in cpu.items():
            np.testing.assert_allclose(v2_logits(base, tiny_repo, name, TEXTS), want, atol=1e-5)
        served = cuda.runs("sha-tiny")[-1]
    grid = ShapeGrid(4, 16, load_manifest(tiny_repo / "sha-tiny").max_sequence_length)
    assert captured == 2 * CAPTURE_RUNS * len(grid.shapes()) and not any(ready_at_run[:captured])
    assert served[1] == grid.padded(len(TEXTS), served[1][1]) and served[1] in grid.shapes()
    for name in ("mha-tiny", "sha-tiny"):
        graphs = models[name]["cuda_graphs"]
        assert models[name]["provider"] == runtime.CUDA and graphs["graphs"] == len(grid.shapes())
        assert graphs["bound_bytes"] > 0 and graphs["capture_s"] > 0
        assert f'h2h_cuda_graphs{{model="{name}"}} {float(len(grid.shapes()))}' in metrics
        assert f'h2h_cuda_graph_bytes{{model="{name}"}} {float(graphs["bound_bytes"])}' in metrics
        assert next(m for m in started if m["name"] == name)["cuda_graphs"] == graphs
    assert len(cuda.runs("sha-tiny")) == CAPTURE_RUNS * len(grid.shapes()) + 1  # no capture after start


def test_capture_failure_leaves_that_model_not_ready_with_the_cause(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from service.app import create_app
    from tests.service.conftest import serve_in_thread

    cuda = fake_cuda.install(monkeypatch)
    cuda.fail_at["sha-tiny"] = (2, 32)
    with serve_in_thread(create_app(_cuda_service(tiny_repo), gpu_metrics=False)) as base:
        models = {m["name"]: m for m in httpx.get(f"http://{base}/v1/models").json()["models"]}
        assert models["mha-tiny"]["state"] == "ready"
        sha = models["sha-tiny"]
        assert sha["state"] == "failed" and sha["cuda_graphs"] is None
        assert "CUDA graph capture failed at batch 2 x 32: CUDA failure 2: out of memory" in sha["error"]
        assert httpx.get(f"http://{base}/v2/models/sha-tiny/ready").status_code != 200
        assert httpx.get(f"http://{base}/v2/health/ready").status_code == 200  # one model serves
        assert 'h2h_model_ready{model="sha-tiny"} 0.0' in httpx.get(f"http://{base}/metrics").text
    with serve_in_thread(
        create_app(_cuda_service(tiny_repo, require_all_models=True), gpu_metrics=False)
    ) as base:
        assert httpx.get(f"http://{base}/v2/health/ready").status_code == 503


@pytest.mark.gpu
def test_graphs_on_cuda_match_cpu_for_every_batch_size(tiny_repo: Path) -> None:
    import onnxruntime as ort

    if runtime.CUDA not in ort.get_available_providers() or runtime.gpu_count() == 0:
        pytest.skip("needs onnxruntime's CUDAExecutionProvider and an NVIDIA GPU")
    d = tiny_repo / "sha-tiny"
    path = verify_variant(d, load_manifest(d))
    gpu = runtime.OrtModel(path, ServiceSettings(provider="cuda", cuda_graph=True))
    cpu = runtime.OrtModel(path, ServiceSettings(provider="cpu"))
    assert gpu.graphs is not None
    rng = np.random.default_rng(1)
    for rows in (1, 3, 4, 5, 3, 1):  # repeats replay graphs captured earlier
        ids = rng.integers(2, 50, size=(rows, 16), dtype=np.int64)
        mask = np.ones_like(ids)
        for a, b in zip(gpu.run(ids, mask), cpu.run(ids, mask), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-3)
    assert gpu.graphs.shapes == [(1, 16), (4, 16), (8, 16)]


@pytest.mark.gpu
def test_inproc_sweep_shapes_each_get_their_own_graph(tiny_repo: Path) -> None:
    """The in-process sweep reuses one session across shapes: with H2H_CUDA_GRAPH each runner
    captures its own graph, so alternating shapes replay without error."""
    import onnxruntime as ort

    from loadtest.sweep.inproc import InprocModel

    if runtime.CUDA not in ort.get_available_providers() or runtime.gpu_count() == 0:
        pytest.skip("needs onnxruntime's CUDAExecutionProvider and an NVIDIA GPU")
    m = InprocModel(tiny_repo / "mha-tiny", provider="cuda", cuda_graph=True)
    assert m.model.graphs is not None
    first, second = (m.time_shape(b, s, repeats=5, budget_s=0.1) for b, s in ((1, 16), (4, 32)))
    again = m.time_shape(1, 16, repeats=5, budget_s=0.1)
    assert all(len(t.seconds) >= 3 for t in (first, second, again))


@pytest.mark.gpu
def test_all_grid_graphs_captured_on_cuda_then_every_batch_replays_one(tiny_repo: Path) -> None:
    """The real thing: warm_up captures the whole grid on the GPU; batches of mixed rows and
    lengths then replay those graphs (no capture after start) and match the CPU."""
    import onnxruntime as ort

    if runtime.CUDA not in ort.get_available_providers() or runtime.gpu_count() == 0:
        pytest.skip("needs onnxruntime's CUDAExecutionProvider and an NVIDIA GPU")
    path = _path(tiny_repo, "mha-tiny")
    settings = ServiceSettings(provider="cuda", max_batch_size=8)
    gpu = runtime.OrtModel(path, settings, max_length=64)
    cpu = runtime.OrtModel(path, ServiceSettings(provider="cpu"))
    memory = gpu.warm_up()
    grid = ShapeGrid(8, settings.length_bucket, 64)
    assert memory is not None and memory.graphs == len(grid.shapes()) and memory.bound_bytes > 0
    rng = np.random.default_rng(4)
    for rows, length in ((1, 5), (3, 17), (8, 64), (5, 33), (1, 5)):
        ids = rng.integers(2, 50, size=(rows, length), dtype=np.int64)
        mask = np.ones_like(ids)
        mask[0, length // 2 + 1 :] = 0
        ids_p, mask_p = pad_batch(ids, mask, *gpu.padded_shape(rows, length))
        for a, b in zip(gpu.run(ids_p, mask_p), cpu.run(ids, mask), strict=True):
            np.testing.assert_allclose(a[:rows], b, atol=1e-3)
    assert gpu.graph_memory() == memory
