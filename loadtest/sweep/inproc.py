"""In-process timing: ONNX Runtime timed directly, no HTTP, no batcher (the model's own cost).

Sessions are the service's own (`service.runtime.OrtModel`: provider choice and options from the
same `H2H_*` environment), so the CUDA execution provider is used
when a GPU is present and the CPU provider otherwise. On CUDA the inputs are bound on the
device once (IO binding), outputs stay on the device, and each timed run ends with
`synchronize_outputs()`, so the clock stops when the GPU is done, not when the launch returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.manifest import Manifest, load_manifest, verify_variant


def random_batch(
    batch: int, seq: int, vocab_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """input_ids in [2, vocab_size) (0 and 1 are pad/unk) and an all-ones attention_mask."""
    ids = rng.integers(2, max(3, vocab_size), size=(batch, seq), dtype=np.int64)
    return ids, np.ones((batch, seq), dtype=np.int64)


@dataclass
class Timing:
    seconds: list[float]
    warmup_runs: int


class InprocModel:
    """One ONNX Runtime session over a model repository folder, built by the service's own runtime."""

    WARMUP = 2  # untimed runs before the timed ones
    MIN_REPEATS = 3  # timed runs even when the budget is spent

    def __init__(
        self,
        model_dir: Path,
        *,
        provider: str = "auto",
        variant: str | None = None,
        cuda_graph: bool | None = None,
    ) -> None:
        """`cuda_graph` None: H2H_CUDA_GRAPH decides, as in the service."""
        from service.runtime.session import OrtModel
        from service.settings import ServiceSettings

        self.dir = Path(model_dir)
        self.manifest: Manifest = load_manifest(self.dir)
        key = variant if variant and variant in self.manifest.variants else None
        path = verify_variant(self.dir, self.manifest, key)
        self.variant = path.name
        graph = {} if cuda_graph is None else {"cuda_graph": cuda_graph}
        self.model = OrtModel(path, ServiceSettings(provider=provider, **graph))
        self.provider = self.model.provider

    def time_shape(
        self, batch: int, seq: int, *, repeats: int = 50, budget_s: float = 2.0, seed: int = 0
    ) -> Timing:
        """Warm up, then time up to `repeats` runs, stopping early once `budget_s` is spent
        (never fewer than `MIN_REPEATS`)."""
        ids, mask = random_batch(batch, seq, self.manifest.vocab_size, np.random.default_rng(seed))
        run = self.model.device_runner(ids, mask)
        times = time_runs(
            run, repeats=repeats, budget_s=budget_s, warmup=self.WARMUP, min_repeats=self.MIN_REPEATS
        )
        return Timing(times, self.WARMUP)


def time_runs(
    run: Callable[[], object], *, repeats: int, budget_s: float, warmup: int, min_repeats: int
) -> list[float]:
    """Seconds of each timed call of `run` after `warmup` untimed ones: up to `repeats`, stopping
    once `budget_s` is spent but never before `min_repeats`."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    t_start = time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_repeats and time.perf_counter() - t_start >= budget_s:
            break
    return times
