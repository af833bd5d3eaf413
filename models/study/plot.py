"""docs/accuracy.png: accuracy against training budget, and the validation curves of every budget.

Left: per variant, mean validation (solid) and test (dashed) accuracy at each budget E, each
seed's test accuracy as a dot. Right: validation accuracy per epoch, mean over seeds, one line
per variant (colour) and budget (line style), the min-max band over seeds shaded. Drawn from
the study (contract.accuracy.budgets); written atomically like every other output.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from contract import atomic
from contract.accuracy import budgets, mean_of

COLORS = {"mha-admin": "tab:blue", "sha-admin": "tab:orange", "sha-pre": "tab:green", "sha-post": "tab:red"}
STYLES = ("-", "--", ":", "-.")


def _band(curves: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    """Mean, min and max per epoch over the runs that reached that epoch."""
    n = max(len(c) for c in curves)
    cols = [[c[i] for c in curves if len(c) > i] for i in range(n)]
    return [sum(c) / len(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols]


def _against_budget(ax: Any, b: dict[str, dict[int, list[dict[str, Any]]]]) -> None:
    for v, by_epochs in b.items():
        es = list(by_epochs)
        c = COLORS.get(v, "tab:gray")
        ax.plot(es, [mean_of(by_epochs[e], "val_accuracy") for e in es], "o-", color=c, label=f"{v} val")
        ax.plot(es, [mean_of(by_epochs[e], "test_accuracy") for e in es], "s--", color=c, label=f"{v} test")
        for e in es:
            ax.scatter([e] * len(by_epochs[e]), [r["test_accuracy"] for r in by_epochs[e]], color=c, s=8)
    ax.set_xscale("log", base=2)
    ticks = sorted({e for by_epochs in b.values() for e in by_epochs})
    ax.set_xticks(ticks, [str(e) for e in ticks])
    ax.set(xlabel="training budget (epochs, schedule decayed to its end)", ylabel="accuracy")
    ax.set_title("accuracy against budget (dots: each seed's test accuracy)", fontsize=9)


def _curves(ax: Any, b: dict[str, dict[int, list[dict[str, Any]]]]) -> None:
    for v, by_epochs in b.items():
        for i, e in enumerate(e for e in by_epochs if e > 1):
            runs = by_epochs[e]
            mean, low, high = _band([r["val_curve"] for r in runs])
            x = list(range(1, len(mean) + 1))
            c = COLORS.get(v, "tab:gray")
            ax.plot(x, mean, STYLES[i % len(STYLES)], color=c, label=f"{v} E={e} (n={len(runs)})")
            ax.fill_between(x, low, high, color=c, alpha=0.12)
    ax.set(xlabel="epoch", ylabel="validation accuracy")
    ax.set_title("validation curves per budget (band: min-max over seeds)", fontsize=9)


def plot_curves(records: list[dict[str, Any]], path: Path) -> bool:
    """Write the plot to `path`; False (nothing written) when there is no finished run."""
    b = budgets(records)
    if not b:
        return False
    # matplotlib only when there is something to draw (and after the Agg backend is chosen)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display needed

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    _against_budget(left, b)
    _curves(right, b)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())
    return True
