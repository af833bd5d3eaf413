"""Admin initialization (Liu et al. 2020) for Post-LN stacks.

Each Post-LN sublayer computes x_i = LN(x_{i-1} * omega_i + f_i(x_{i-1})). Admin sets
omega from one forward pass at initialization so that deeper sublayers lean more on
their residual and the output's dependence on each branch stays bounded: that is what
lets a 144-layer Post-LN stack train.

We follow the reference implementation (Transformer-Clinic): omega_1 = 1 and
omega_{i+1} = sqrt(Var[x_{i-1} * omega_i] + Var[f_i(x_{i-1})]). Since each x is a
LayerNorm output (variance ~1), this is omega_i^2 ~= 1 + sum_{j<i} Var[f_j], the paper's
"accumulated branch variance". The pass is sequential: omega_i is fixed before sublayer
i's output feeds the rest of the pass, so later variances see the earlier scales.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from models.encoder import Encoder, Sublayer


@torch.no_grad()
def profile(model: Encoder, input_ids: Tensor, attention_mask: Tensor) -> list[float]:
    """Set every sublayer's omega from a profiling batch; returns the omegas chosen.

    Variances are taken over real (non-padding) tokens only. Dropout is off during the
    pass so the estimate does not depend on the dropout draw.
    """
    subs = [m for m in model.sublayers if isinstance(m, Sublayer) and m.omega is not None]
    if not subs:
        raise ValueError("model has no Admin sublayers (norm must be 'admin')")
    token_mask = attention_mask.bool()
    state = {"next": 1.0}
    chosen: list[float] = []

    def observe(sub: Sublayer, x: Tensor, fx: Tensor) -> None:
        scale = state["next"]
        sub.omega.fill_(scale)
        chosen.append(scale)
        state["next"] = math.sqrt(float((x * sub.omega)[token_mask].var()) + float(fx[token_mask].var()))

    was_training = model.training
    model.eval()
    for s in subs:
        s.observer = observe
    try:
        model(input_ids, attention_mask)
    finally:
        for s in subs:
            s.observer = None
        model.train(was_training)
    return chosen
