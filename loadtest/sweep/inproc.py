"""In-process timing: ONNX Runtime timed directly, no HTTP, no batcher (the model's own cost).

Sessions are the service's own (`service.runtime.session.OrtModel`: provider choice and options from the
same `H2H_*` environment), so the CUDA execution provider is used
when a GPU is present and the CPU provider otherwise. On CUDA the inputs are bound on the
device once (IO binding), outputs stay on the device, and each timed run ends with
`synchronize_outputs()`, so the clock stops when the GPU is done, not when the launch returns.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.manifest import Manifest, load_manifest, verify_variant
from service.runtime.config import RuntimeConfig
from service.runtime.session import OrtModel


def random_batch(
    batch: int, seq: int, vocab_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """input_ids in [2, vocab_size) (0 and 1 are pad/unk) and an all-ones attention_mask."""
    ids = rng.integers(2, max(3, vocab_size), size=(batch, seq), dtype=np.int64)
    return ids, np.ones((batch, seq), dtype=np.int64)


MAX_SPREAD = 0.10  # a point's block p50s should agree within this share of their median


@dataclass
class Timing:
    """Every timed run, and the p50 of each block of runs (one block: no spread to state)."""

    seconds: list[float]
    warmup_runs: int
    block_p50s: list[float] = field(default_factory=list)

    @property
    def spread(self) -> float | None:
        """(max - min) / median of the blocks' p50s; None with fewer than two blocks."""
        if len(self.block_p50s) < 2:
            return None
        return (max(self.block_p50s) - min(self.block_p50s)) / statistics.median(self.block_p50s)


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
        """`cuda_graph` None: the runtime's default (on, where CUDA serves); no H2H_* variable decides."""

        self.dir = Path(model_dir)
        self.manifest: Manifest = load_manifest(self.dir)
        key = variant if variant and variant in self.manifest.variants else None
        path = verify_variant(self.dir, self.manifest, key)
        self.variant = path.name
        graph = {} if cuda_graph is None else {"cuda_graph": cuda_graph}
        self.model = OrtModel(path, RuntimeConfig(provider=provider, **graph))
        self.provider = self.model.provider

    def time_shape(
        self,
        batch: int,
        seq: int,
        *,
        repeats: int = 50,
        budget_s: float = 2.0,
        seed: int = 0,
        blocks: int = 1,
        clock: str = "wall",
    ) -> Timing:
        """Warm up, then time up to `repeats` runs, stopping early once `budget_s` is spent
        (never fewer than `MIN_REPEATS`); with `blocks` > 1, as that many blocks (`time_blocks`).
        `clock` cpu times each run in this process's CPU seconds instead of wall time."""
        tick = time.process_time if clock == "cpu" else time.perf_counter
        ids, mask = random_batch(batch, seq, self.manifest.vocab_size, np.random.default_rng(seed))
        run = self.model.device_runner(ids, mask)
        if blocks > 1:
            return time_blocks(
                run, blocks=blocks, repeats=repeats, budget_s=budget_s, warmup=self.WARMUP, tick=tick
            )
        times = time_runs(
            run,
            repeats=repeats,
            budget_s=budget_s,
            warmup=self.WARMUP,
            min_repeats=self.MIN_REPEATS,
            tick=tick,
        )
        return Timing(times, self.WARMUP)


def time_blocks(
    run: Callable[[], object],
    *,
    blocks: int,
    repeats: int,
    budget_s: float,
    warmup: int,
    tick: Callable[[], float] = time.perf_counter,
) -> Timing:
    """`blocks` blocks of runs, each with its share of the budget and of `repeats`, and up to as
    many again while the blocks' p50s spread by more than MAX_SPREAD: a point's p50 then comes
    with the spread of its repeats, and a noisy point gets more of them before it is written."""
    for _ in range(warmup):
        run()
    seconds: list[float] = []
    p50s: list[float] = []
    each = max(InprocModel.MIN_REPEATS, repeats // blocks)
    while len(p50s) < blocks or (len(p50s) < 2 * blocks and (Timing([], 0, p50s).spread or 0) > MAX_SPREAD):
        block = time_runs(
            run,
            repeats=each,
            budget_s=budget_s / blocks,
            warmup=0,
            min_repeats=InprocModel.MIN_REPEATS,
            tick=tick,
        )
        seconds += block
        p50s.append(statistics.median(block))
    return Timing(seconds, warmup, p50s)


def time_runs(
    run: Callable[[], object],
    *,
    repeats: int,
    budget_s: float,
    warmup: int,
    min_repeats: int,
    tick: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds of each timed call of `run` after `warmup` untimed ones: up to `repeats`, stopping
    once `budget_s` of wall time is spent but never before `min_repeats`. `tick` is the clock a
    call is timed by (wall time, or `time.process_time`: this process's CPU seconds)."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    t_start = time.perf_counter()
    while len(times) < repeats:
        t0 = tick()
        run()
        times.append(tick() - t0)
        if len(times) >= min_repeats and time.perf_counter() - t_start >= budget_s:
            break
    return times
