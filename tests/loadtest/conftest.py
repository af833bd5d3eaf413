"""Helpers and fixtures the load tester's tests share."""

from __future__ import annotations

from collections.abc import Callable

from contract.results import SweepRow


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
