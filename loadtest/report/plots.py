"""PNG plots (matplotlib, Agg backend): one function per figure, each returns its path or None."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from contract import atomic  # noqa: E402
from contract.results import SweepRow  # noqa: E402
from loadtest.report import analysis, choose  # noqa: E402


def _save(fig: Figure, path: Path) -> Path:
    """Render to memory, then write atomically: a report never links a half-written PNG."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())
    return path


def latency_vs_batch(points: list[SweepRow], out: Path) -> Path | None:
    source, rows = analysis.latency_rows(points)
    models = list(dict.fromkeys(r.model for r in rows))
    if not models:
        return None
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4), sharey=True, squeeze=False)
    seqs = sorted({r.seq for r in rows})
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(seqs))))
    for ax, m in zip(axes[0], models, strict=True):
        mr = [r for r in rows if r.model == m]
        for c, q in zip(colors, seqs, strict=True):
            pts = sorted((r.batch, r.p50_ms) for r in mr if r.seq == q and r.p50_ms is not None)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", color=c, label=f"seq {q}")
        ax.set(
            title=f"{mr[0].arch.upper()}: {m} ({mr[0].layers}L-{mr[0].heads}H)",
            xlabel="batch size",
            xscale="log",
            yscale="log",
        )
        batches = sorted({r.batch for r in mr})
        ax.set_xticks(batches, labels=[str(b) for b in batches])
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(f"p50 latency, ms ({source})")
    axes[0][-1].legend(fontsize=8)
    return _save(fig, out / "latency_vs_batch.png")


def ratio_heatmap(points: list[SweepRow], out: Path) -> Path | None:
    g = analysis.ratio_grid(points)
    if g is None:
        return None
    a = np.full((len(g.seqs), len(g.batches)), np.nan)
    for (b, q), r in g.ratio.items():
        a[g.seqs.index(q), g.batches.index(b)] = r
    lo, hi = np.nanmin(a), np.nanmax(a)
    norm = TwoSlopeNorm(vcenter=1.0, vmin=min(lo, 0.99), vmax=max(hi, 1.01))
    fig, ax = plt.subplots(figsize=(1.0 * len(g.batches) + 3, 0.6 * len(g.seqs) + 2.2))
    im = ax.imshow(a, cmap="RdBu_r", norm=norm, origin="lower", aspect="auto")
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            if not np.isnan(a[i, j]):
                shade = float(norm(a[i, j]))
                ax.text(
                    j,
                    i,
                    f"{a[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if shade < 0.2 or shade > 0.8 else "black",
                    fontweight="bold" if a[i, j] < 1 else "normal",
                )
    if a.shape[0] >= 2 and a.shape[1] >= 2 and lo < 1 < hi:
        ax.contour(
            np.arange(a.shape[1]), np.arange(a.shape[0]), a, levels=[1.0], colors="black", linewidths=2
        )
    # outline cells where SHA is cheaper, so the crossover shows even on a 1-row grid
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            if a[i, j] < 1:
                ax.add_patch(
                    plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", lw=1, ls="--")
                )
    ax.set_xticks(range(len(g.batches)), labels=[str(b) for b in g.batches])
    ax.set_yticks(range(len(g.seqs)), labels=[str(q) for q in g.seqs])
    ax.set(
        xlabel="batch size",
        ylabel="sequence length",
        title=f"p50 latency ratio {g.sha} / {g.mha} ({g.source})\n< 1 (blue, outlined): SHA cheaper; black line: ratio = 1",
    )
    fig.colorbar(im, ax=ax, label="SHA / MHA")
    return _save(fig, out / "ratio_heatmap.png")


def throughput_vs_concurrency(points: list[SweepRow], out: Path) -> Path | None:
    rows = [r for r in points if r.load == "closed" and r.rps and r.tokens_per_s is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    keys = sorted({(r.model, r.batch, r.seq) for r in rows})
    arch = {r.model: r.arch for r in rows}
    for m, b, q in keys:
        pts = sorted(
            (r.concurrency, r.tokens_per_s or 0.0) for r in rows if (r.model, r.batch, r.seq) == (m, b, q)
        )
        style = "-" if arch.get(m) == "mha" else "--"
        ax.plot(*zip(*pts, strict=True), marker="o", ls=style, label=f"{m} b={b} s={q}")
    concs = sorted({r.concurrency for r in rows})
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent requests (closed loop)",
        ylabel="tokens/s",
        title="HTTP throughput vs concurrency",
    )
    ax.set_xticks(concs, labels=[str(c) for c in concs])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out / "throughput_vs_concurrency.png")


def overhead_plot(points: list[SweepRow], out: Path) -> Path | None:
    rows = analysis.overhead(points)
    if not rows:
        return None
    arch = {r.model: r.arch for r in rows}
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for m, q in sorted({(r.model, r.seq) for r in rows}):
        pts = sorted((r.batch, r.overhead_ms) for r in rows if (r.model, r.seq) == (m, q))
        ax.plot(
            *zip(*pts, strict=True), marker="o", ls="-" if arch.get(m) == "mha" else "--", label=f"{m} s={q}"
        )
    bs = sorted({r.batch for r in rows})
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(
        xscale="log",
        xlabel="batch size",
        ylabel="HTTP p50 − in-process p50, ms",
        title="Service overhead over in-process (concurrency 1)",
    )
    ax.set_xticks(bs, labels=[str(b) for b in bs])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out / "overhead.png")


def accuracy_vs_capacity(
    cands: list[choose.Candidate], shape: tuple[int, int], slo_ms: float, out: Path
) -> Path | None:
    """One point per model: capacity within the SLO at `shape` (x) against test accuracy (y), with
    the accuracy's 95% test-set interval as an error bar where the test set's size is known."""
    pts = [c for c in cands if c.accuracy is not None and shape in c.capacity]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    half = {c.model: choose.Z95 * (c.accuracy_se() or 0.0) for c in pts}
    for c in pts:
        x, y = c.capacity[shape], float(c.accuracy or 0.0)
        ax.errorbar(
            [x],
            [y],
            yerr=[half[c.model]] if half[c.model] else None,
            markersize=8,
            capsize=4,
            fmt="o" if c.arch == "mha" else "s",
            zorder=3,
            color="tab:blue" if c.arch == "mha" else "tab:orange",
        )
        ax.annotate(
            f"{c.model}\n{c.shape_label}", (x, y), textcoords="offset points", xytext=(8, 4), fontsize=8
        )
    b, q = shape
    xs, ys = [c.capacity[shape] for c in pts], [float(c.accuracy or 0.0) for c in pts]
    ax.set_xlim(0, max(xs) * 1.35 + 1e-9)
    pad = max(0.01, (max(ys) - min(ys)) * 0.5, 1.15 * max(half.values()))
    ax.set_ylim(min(ys) - pad, max(ys) + pad)
    bars = ", bars: 95% test-set interval" if any(half.values()) else ""
    ax.set(
        xlabel=f"capacity, requests/s (batch {b} x seq {q}, open loop)",
        ylabel=f"test accuracy{bars}",
        title=f"Accuracy vs capacity at p99 \u2264 {slo_ms:g} ms",
    )
    ax.grid(True, alpha=0.3)
    return _save(fig, out / "accuracy_vs_capacity.png")


def all_plots(points: list[SweepRow], out: Path) -> list[Path]:
    made = [
        f(points, out) for f in (latency_vs_batch, ratio_heatmap, throughput_vs_concurrency, overhead_plot)
    ]
    return [p for p in made if p is not None]
