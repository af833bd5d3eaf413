"""The floor: ONNX Runtime timed directly, no HTTP, no batcher.

Sessions are built like the service builds them (`service.runtime.choose_providers` and
`session_options`, from the same `H2H_*` environment), so the CUDA execution provider is used
when a GPU is present and the CPU provider otherwise. On CUDA the inputs are bound on the
device once (IO binding), outputs stay on the device, and each timed run ends with
`synchronize_outputs()`, so the clock stops when the GPU is done, not when the launch returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.manifest import Manifest, load_manifest, verify_variant


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
    """One ONNX Runtime session over a model repository folder."""

    def __init__(self, model_dir: Path, *, provider: str = "auto", variant: str | None = None) -> None:
        import onnxruntime as ort

        from service.runtime import CUDA, choose_providers, session_options
        from service.settings import ServiceSettings

        self.dir = Path(model_dir)
        self.manifest: Manifest = load_manifest(self.dir)
        key = variant if variant and variant in self.manifest.variants else None
        path = verify_variant(self.dir, self.manifest, key)
        self.variant = path.name
        settings = ServiceSettings(provider=provider)
        chosen = choose_providers(settings)
        self.session = ort.InferenceSession(
            str(path), sess_options=session_options(settings, chosen[0][0]),
            providers=[n for n, _ in chosen], provider_options=[o for _, o in chosen],
        )  # fmt: skip
        self.provider = self.session.get_providers()[0]
        self.cuda = self.provider == CUDA
        self.device_id = settings.cuda_device_id
        self._ort = ort

    def _runner(self, ids: np.ndarray, mask: np.ndarray):
        ort = self._ort
        if self.cuda:
            binding = self.session.io_binding()
            for name, arr in (("input_ids", ids), ("attention_mask", mask)):
                binding.bind_ortvalue_input(
                    name, ort.OrtValue.ortvalue_from_numpy(arr, "cuda", self.device_id)
                )
            for name in ("logits", "embedding"):
                binding.bind_output(name, "cuda", self.device_id)
            binding.synchronize_inputs()

            def run() -> None:
                self.session.run_with_iobinding(binding)
                binding.synchronize_outputs()

            return run
        feeds = {"input_ids": ids, "attention_mask": mask}
        return lambda: self.session.run(["logits", "embedding"], feeds)

    def time_shape(
        self, batch: int, seq: int, *, repeats: int = 50, budget_s: float = 2.0, min_repeats: int = 3,
        warmup: int = 2, seed: int = 0,
    ) -> Timing:  # fmt: skip
        """Warm up, then time up to `repeats` runs, stopping early once `budget_s` is spent
        (never fewer than `min_repeats`)."""
        ids, mask = random_batch(batch, seq, self.manifest.vocab_size, np.random.default_rng(seed))
        run = self._runner(ids, mask)
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
        return Timing(times, warmup)
