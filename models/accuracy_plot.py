"""Validation accuracy per epoch and per training second, mean line and min-max band over seeds.

Drawn from the largest group of equal-terms records (models.accuracy.groups), each variant
at its chosen learning rate; written atomically like every other output.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from contract import atomic
from models.accuracy import VARIANTS, chosen_runs, groups

COLORS = {"mha-admin": "tab:blue", "sha-admin": "tab:orange", "sha-pre": "tab:green", "sha-post": "tab:red"}


def _band(curves: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    """Mean, min and max per epoch over the runs that reached that epoch."""
    n = max(len(c) for c in curves)
    cols = [[c[i] for c in curves if len(c) > i] for i in range(n)]
    return [sum(c) / len(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols]


def plot_curves(records: list[dict[str, Any]], path: Path) -> bool:
    """Write the plot to `path`; False (nothing written) when there is no finished run."""
    if not records:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    group = groups(records)[0]
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = False
    for v in VARIANTS:
        runs = chosen_runs(group, v)
        if not runs:
            continue
        drawn = True
        mean, low, high = _band([r["val_curve"] for r in runs])
        epochs = list(range(1, len(mean) + 1))
        label = f"{v} (n={len(runs)}, lr {runs[0]['lr']:g})"
        by_epoch.plot(epochs, mean, marker="o", color=COLORS[v], label=label)
        by_epoch.fill_between(epochs, low, high, color=COLORS[v], alpha=0.2)
        t_mean, _, _ = _band([r["epoch_train_s"] for r in runs])
        by_time.plot(t_mean, mean, marker="o", color=COLORS[v], label=label)
        by_time.fill_between(t_mean, low, high, color=COLORS[v], alpha=0.2)
    if not drawn:
        plt.close(fig)
        return False
    r0 = group[0]
    fig.suptitle(
        f"validation accuracy, preset {r0.get('preset')}, init {r0.get('attn_init')} (band: min-max over seeds)"
    )
    by_epoch.set(xlabel="epoch", ylabel="validation accuracy")
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_time.set(xlabel="training seconds (mean over seeds)", ylabel="validation accuracy")
    for ax in (by_epoch, by_time):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())
    return True
