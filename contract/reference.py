"""Reference batches: token ids and the PyTorch fp32 outputs every variant must reproduce.

Export draws them once and measures each variant against them on CPU (export.parity). A
variant that CPU cannot vouch for (fp16 arithmetic, which CUDA runs and CPU only emulates)
is marked pending for that provider, and the batches are written beside the graphs as
`reference.npz`, so the service measures it the same way, with the same rule, on the provider
that will run it before it serves it. numpy only: the service imports this module.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from contract import atomic, tensors
from contract.manifest import Parity

# (input_ids, attention_mask) -> (logits, embedding), as ONNX Runtime runs one variant
Runner = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Batch:
    """One batch of inputs and what PyTorch (fp32) answered for it."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    logits: np.ndarray
    embedding: np.ndarray

    @property
    def shape(self) -> list[int]:
        return [int(d) for d in self.input_ids.shape]


def measure(
    batches: list[Batch], run: Runner, tolerance: float, provider: str, emulated_ops: Iterable[str] = ()
) -> Parity:
    """Run every batch and record the worst error and the argmax agreement against PyTorch.

    A row whose reference top-2 logit gap is within 2 x tolerance is a near tie: any error
    within tolerance may flip its argmax, so a flip there is counted but not decisive.
    """
    worst_logits = worst_emb = 0.0
    agree = ties = decisive = rows = 0
    for b in batches:
        logits, emb = (np.asarray(x, dtype=np.float32) for x in run(b.input_ids, b.attention_mask))
        worst_logits = max(worst_logits, float(np.abs(logits - b.logits).max()))
        worst_emb = max(worst_emb, float(np.abs(emb - b.embedding).max()))
        top2 = np.sort(b.logits, axis=-1)[:, -2:]
        tie = top2[:, 1] - top2[:, 0] <= 2 * tolerance
        same = logits.argmax(-1) == b.logits.argmax(-1)
        agree, ties = agree + int(same.sum()), ties + int(tie.sum())
        decisive += int((~same & ~tie).sum())
        rows += len(b.logits)
    return Parity(
        max_abs_logits=worst_logits,
        max_abs_embedding=worst_emb,
        argmax_agreement=agree / max(rows, 1),
        tolerance=tolerance,
        shapes=[b.shape for b in batches],
        near_ties=ties,
        decisive_disagreements=decisive,
        rows=rows,
        provider=provider,
        emulated_ops=sorted(emulated_ops),
    )


def failure(parity: Parity) -> str | None:
    """Why a measurement fails the bar (one line), or None when it passes: logits beyond
    tolerance, or an argmax flip on a row that is not a near tie."""
    if parity.max_abs_logits <= parity.tolerance and parity.decisive_disagreements == 0:
        return None
    return (
        f"max |logits diff| {parity.max_abs_logits:.3g} (tolerance {parity.tolerance:g}), "
        f"argmax agreement {parity.argmax_agreement:.3f} on {parity.provider}"
    )


_FIELDS = tuple(f.name for f in fields(Batch))  # the npz's arrays: `<field>_<batch index>`


def save(path: str | Path, batches: list[Batch]) -> None:
    """Write the batches as one .npz (arrays `<field>_<i>`), atomically."""
    arrays = {f"{f}_{i}": getattr(b, f) for i, b in enumerate(batches) for f in _FIELDS}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic.write_bytes(path, buf.getvalue())


def load(path: str | Path) -> list[Batch]:
    """Read what `save` wrote; raises ValueError for a file that is not such a set of batches."""
    with np.load(Path(path), allow_pickle=False) as data:
        count = len(data.files) // len(_FIELDS)
        try:
            batches = [Batch(**{f: data[f"{f}_{i}"] for f in _FIELDS}) for i in range(count)]
        except KeyError as exc:
            raise ValueError(f"{Path(path).name}: missing array {exc}") from None
    for b in batches:
        if b.input_ids.dtype != np.int64 or b.input_ids.shape != b.attention_mask.shape:
            raise ValueError(
                f"{Path(path).name}: {tensors.INPUT_IDS}/{tensors.ATTENTION_MASK} must be int64 pairs"
            )
    if not batches:
        raise ValueError(f"{Path(path).name}: no batches")
    return batches
