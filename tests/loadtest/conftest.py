"""Helpers and fixtures the load tester's tests share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from loadtest.results import SweepRow


def inproc_pair_rows(
    ratio: dict[tuple[int, int], float],
    mha_ms: Callable[[int, int], float],
    pair: tuple[tuple[str, str, int, int], tuple[str, str, int, int]],
) -> list[SweepRow]:
    """In-process result rows for an MHA/SHA `pair` of (model, arch, layers, heads): per (batch, seq)
    the MHA p50 is `mha_ms(batch, seq)` and the SHA p50 is that times `ratio[(batch, seq)]`: the shape every
    crossover test starts from."""
    rows = []
    for (b, q), r in ratio.items():
        for (model, arch, layers, heads), ms in zip(pair, (mha_ms(b, q), mha_ms(b, q) * r), strict=True):
            rows.append(
                SweepRow(
                    mode="inproc",
                    load="inproc",
                    model=model,
                    arch=arch,
                    layers=layers,
                    heads=heads,
                    batch=b,
                    seq=q,
                    p50_ms=ms,
                )
            )
    return rows


@pytest.fixture(scope="session")
def tiny_random_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-init pair (`mha-tiny-random` 2L-4H, `sha-tiny-random` 8L-1H) with model.onnx
    and the fused model.opt.onnx: the profile and the PyTorch reference run on it."""
    from export.api import export_random
    from export.settings import ExportOptions

    repo = tmp_path_factory.mktemp("random_repository")
    for arch in ("mha", "sha"):
        export_random("tiny", arch, repo, options=ExportOptions(optimize=True))
    return repo
