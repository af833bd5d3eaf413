"""Fold Admin's residual scale ω into neighbouring weights before export.

An Admin sublayer computes LN(x·ω + f(x)). The Mul by ω sits on the residual path, where
ONNX Runtime's transformer optimizer expects a plain Add of the sublayer's input, so it
never recognises the attention block (no Attention fusion, the biggest speed-up it offers).

Every sublayer input x in a Post-LN stack is the output of a LayerNorm (the embedding norm or
the previous sublayer's norm), and f starts with Linear layers, so the same function can be
written without the Mul: scale that LayerNorm's affine weight and bias by ω (its output
becomes x·ω) and divide the input columns of f's first Linear layers by ω (f still sees x).
The result is an ordinary Post-LN graph computing the same values; the export's parity check
compares it with the unfolded PyTorch model, so any slip fails the export.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from models.encoder import Encoder, FeedForward, SelfAttention

# |ω| below this would turn the division into an overflow; keep the Mul then (never seen).
MIN_ABS_OMEGA = 1e-6


def _input_linears(f: nn.Module) -> list[nn.Linear]:
    """The layers that read the sublayer's input x, whose columns must absorb 1/ω."""
    if isinstance(f, SelfAttention):
        return [f.query, f.key, f.value]
    if isinstance(f, FeedForward):
        return [f.up]
    raise TypeError(f"no rule to fold Admin's omega into {type(f).__name__}")


def fold_admin(model: Encoder) -> Encoder:
    """A copy of `model` with every foldable ω folded (the model itself is untouched).

    Models without Admin are returned as they are.
    """
    if model.cfg.norm != "admin":
        return model
    folded = copy.deepcopy(model).eval()
    feeding: nn.LayerNorm = folded.embed_norm  # the LayerNorm whose output is the next input
    with torch.no_grad():
        for sub in folded.sublayers:
            omega = sub.omega
            if omega is not None and bool((omega.abs() >= MIN_ABS_OMEGA).all()):
                feeding.weight.mul_(omega)
                feeding.bias.mul_(omega)
                for linear in _input_linears(sub.f):
                    linear.weight.div_(omega[None, :])
                sub.omega = None
                sub.norm_kind = "post"
            feeding = sub.norm
    return folded
