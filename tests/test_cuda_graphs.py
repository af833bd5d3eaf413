"""service.cuda_graphs: the padding that keeps the number of captured shapes small must not change
any real row's answer (checked on the CPU with the real tiny models), and on a GPU the service with
H2H_CUDA_GRAPH answers what the CPU answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.manifest import load_manifest, verify_variant
from service import runtime
from service.cuda_graphs import pad_batch, padded_rows
from service.settings import ServiceSettings


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
