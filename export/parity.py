"""Parity proof: PyTorch and ONNX Runtime (CPU) must agree before anything is written.

Fresh random batches over shapes that hit the edges: sequence 1, the model's max length,
and rows padded at the end (so the additive mask and the masked mean pool are exercised).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from contract import tensors
from contract.manifest import Parity
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


def measure(
    model: Encoder,
    onnx_paths: dict[str, Path],
    tolerances: dict[str, float],
    *,
    seed: int = 0,
    shapes: list[tuple[int, int]] | None = None,
) -> dict[str, Parity]:
    """Compare every variant against the PyTorch model on the same fresh batches.

    Batches are generated once and the PyTorch reference computed once, so checking three
    variants costs one PyTorch pass, not three.
    """
    cfg = model.cfg
    shapes = shapes or parity_shapes(cfg.max_len)
    gen = torch.Generator().manual_seed(seed)
    model = model.eval()
    sessions = {k: session(p) for k, p in onnx_paths.items()}
    worst = {k: [0.0, 0.0] for k in onnx_paths}
    agree = {k: 0 for k in onnx_paths}
    decisive_miss = {k: 0 for k in onnx_paths}
    ties = {k: 0 for k in onnx_paths}
    rows = 0
    for batch, seq in shapes:
        ids, mask = random_batch(gen, batch, seq, cfg.vocab_size)
        with torch.no_grad():
            ref_logits, ref_emb = (t.numpy() for t in model(ids, mask))
        feed = {tensors.INPUT_IDS: ids.numpy(), tensors.ATTENTION_MASK: mask.numpy()}
        rows += batch
        top2 = np.sort(ref_logits, axis=-1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        for key, sess in sessions.items():
            logits, emb = (np.asarray(x, dtype=np.float32) for x in sess.run(list(tensors.OUTPUTS), feed))
            worst[key][0] = max(worst[key][0], float(np.abs(logits - ref_logits).max()))
            worst[key][1] = max(worst[key][1], float(np.abs(emb - ref_emb).max()))
            same = logits.argmax(-1) == ref_logits.argmax(-1)
            tie = margin <= 2 * tolerances[key]
            agree[key] += int(same.sum())
            ties[key] += int(tie.sum())
            decisive_miss[key] += int((~same & ~tie).sum())
    return {
        k: Parity(
            max_abs_logits=worst[k][0],
            max_abs_embedding=worst[k][1],
            argmax_agreement=agree[k] / rows,
            tolerance=tolerances[k],
            shapes=[list(s) for s in shapes],
            near_ties=ties[k],
            decisive_disagreements=decisive_miss[k],
            rows=rows,
        )
        for k in onnx_paths
    }


def check(name: str, parity: Parity) -> None:
    """Raise ParityError (one line) if logits break tolerance or an argmax flips on a clear row.

    A flip on a near-tie row (reference top-2 gap <= 2 x tolerance) is what any error
    within tolerance can cause, so it is recorded (argmax_agreement) but not fatal;
    untrained and barely trained models have many such rows.
    """
    if parity.max_abs_logits > parity.tolerance or parity.decisive_disagreements > 0:
        raise ParityError(
            f"parity failed for {name}: max |logits diff| {parity.max_abs_logits:.3g} "
            f"(tolerance {parity.tolerance:g}), argmax agreement {parity.argmax_agreement:.3f}"
        )
