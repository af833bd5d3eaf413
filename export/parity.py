"""Parity proof: PyTorch and ONNX Runtime (CPU) must agree before anything is written.

The comparison itself (and its pass/fail rule) is contract.reference's, shared with the
service, which repeats it on CUDA for variants CPU cannot vouch for.

Fresh random batches over shapes that hit the edges: sequence 1, the model's max length,
and rows padded at the end (so the additive mask and the masked mean pool are exercised).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from contract import reference, tensors
from contract.manifest import CPU_PROVIDER, Parity
from contract.reference import Batch
from models.encoder import Encoder

# fp32 variants must match PyTorch this closely; the fp16 bar is an export option
# (export.settings.FP16_TOLERANCE). Read at call time, so a test can tighten it.
FP32_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """ONNX Runtime disagrees with PyTorch beyond tolerance; nothing may be written."""


def parity_shapes(max_len: int) -> list[tuple[int, int]]:
    """(batch, sequence) pairs: single token, short, padded mid-length, and max length.

    Rows 1, 3, ... of every batch with sequence > 1 are padded (see random_batch).
    """
    shapes = [(1, 1), (4, 1), (3, min(7, max_len)), (4, max(2, max_len // 4)), (2, max_len)]
    return list(dict.fromkeys(shapes))


def random_batch(
    gen: torch.Generator, batch: int, seq: int, vocab_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids in [2, vocab); when seq > 1, every other row is padded with a random length."""
    ids = torch.randint(2, vocab_size, (batch, seq), generator=gen, dtype=torch.long)
    mask = torch.ones_like(ids)
    if seq > 1:
        for row in range(1, batch, 2):
            keep = int(torch.randint(1, seq, (1,), generator=gen))
            mask[row, keep:] = 0
            ids[row, keep:] = 0
    return ids, mask


def session(path: str | Path, threads: int = 0) -> ort.InferenceSession:
    """A quiet CPU session: the proof is against ONNX Runtime's reference provider."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def reference_batches(
    model: Encoder, *, seed: int = 0, shapes: list[tuple[int, int]] | None = None
) -> list[Batch]:
    """Fresh random batches over `shapes` (default parity_shapes) with PyTorch's fp32 answers,
    computed once however many variants are then measured against them."""
    cfg = model.cfg
    gen = torch.Generator().manual_seed(seed)
    model = model.eval()
    batches = []
    for batch, seq in shapes or parity_shapes(cfg.max_len):
        ids, mask = random_batch(gen, batch, seq, cfg.vocab_size)
        with torch.no_grad():
            logits, emb = (t.numpy() for t in model(ids, mask))
        batches.append(Batch(ids.numpy(), mask.numpy(), logits, emb))
    return batches


def runner(sess: ort.InferenceSession) -> reference.Runner:
    """A session as contract.reference runs it: (ids, mask) -> (logits, embedding)."""

    def run(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, emb = sess.run(list(tensors.OUTPUTS), {tensors.INPUT_IDS: ids, tensors.ATTENTION_MASK: mask})
        return logits, emb

    return run


def measure(
    model: Encoder,
    onnx_paths: dict[str, Path],
    tolerances: dict[str, float],
    *,
    seed: int = 0,
    shapes: list[tuple[int, int]] | None = None,
    batches: list[Batch] | None = None,
    emulated: dict[str, list[str]] | None = None,
) -> dict[str, Parity]:
    """Compare every variant (on CPU) against PyTorch on the same batches (`batches`, else
    fresh ones from `seed` and `shapes`); `emulated`: per variant, the operators CPU ran in
    fp32 for want of fp16 kernels, recorded with its result."""
    batches = batches or reference_batches(model, seed=seed, shapes=shapes)
    emulated = emulated or {}
    return {
        k: reference.measure(batches, runner(session(p)), tolerances[k], CPU_PROVIDER, emulated.get(k, ()))
        for k, p in onnx_paths.items()
    }


def check(name: str, parity: Parity) -> None:
    """Raise ParityError (one line) if logits break tolerance or an argmax flips on a clear row.

    A flip on a near-tie row (reference top-2 gap <= 2 x tolerance) is what any error
    within tolerance can cause, so it is recorded (argmax_agreement) but not fatal;
    untrained and barely trained models have many such rows.
    """
    why = reference.failure(parity)
    if why:
        raise ParityError(f"parity failed for {name}: {why}")
