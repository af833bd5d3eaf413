"""Markdown summary of the seeded accuracy records: mean +- std, SHA - MHA, equal wall-clock, and
under early stopping the epochs each variant took to converge.

Every comparison stays inside one group of equal terms (models.accuracy.groups). Equal
wall-clock is read off the per-epoch records: the faster model's mean training seconds
set the budget T, and each run of the other model is scored by the best validation
accuracy among the epochs it had finished by T (what stopping there would have kept).
The learning-rate schedule of such a cut run had not decayed yet, so this slightly
understates the slower model; it is a bound, not a retrained run.
"""

from __future__ import annotations

import statistics
from typing import Any

from models.accuracy import BASELINE, TERMS, VARIANTS, chosen_runs, groups
from models.stats import mean_std, welch_interval

SLACK = 1.02  # an epoch finishing within 2% of T counts as finished by T (timing noise)


def _pm(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{m:.4f} ± {s:.4f}" if len(values) > 1 else f"{m:.4f}"


def _present(group: list[dict[str, Any]]) -> list[str]:
    return [v for v in VARIANTS if chosen_runs(group, v)]


def variant_table(group: list[dict[str, Any]]) -> list[str]:
    """One row per variant at its chosen rate: seeds, rate, validation, test, training time."""
    lines = [
        "| variant | seeds | lr | val acc | test acc | train s (mean) | diverged |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in _present(group):
        runs = chosen_runs(group, v)
        lr = runs[0]["lr"]
        div = sum(1 for r in group if r["variant"] == v and r["lr"] == lr and r.get("diverged"))
        lines.append(
            f"| {v} | {len(runs)} | {lr:g} | {_pm([r['val_accuracy'] for r in runs])} | "
            f"{_pm([r['test_accuracy'] for r in runs])} | "
            f"{_secs(statistics.fmean(r['epoch_train_s'][-1] for r in runs))} | {div} |"
        )
    return lines


def difference_lines(group: list[dict[str, Any]]) -> list[str]:
    """Each SHA variant minus MHA-Admin on test accuracy, in points, with Welch's 95% interval."""
    base = [r["test_accuracy"] for r in chosen_runs(group, BASELINE)]
    lines = []
    for v in _present(group):
        if v == BASELINE or not base:
            continue
        other = [r["test_accuracy"] for r in chosen_runs(group, v)]
        iv = welch_interval(base, other)
        diff = 100 * (statistics.fmean(other) - statistics.fmean(base))
        if iv is None:
            lines.append(f"- {v} − {BASELINE}: {diff:+.2f} points (no interval: needs ≥ 2 seeds of each)")
        else:
            verdict = "excludes 0" if iv.low > 0 or iv.high < 0 else "includes 0"
            lines.append(
                f"- {v} − {BASELINE}: {diff:+.2f} points, 95% interval [{100 * iv.low:+.2f}, "
                f"{100 * iv.high:+.2f}] (Welch, df {iv.df:.1f}; {verdict})"
            )
    return lines


def best_by(run: dict[str, Any], budget_s: float) -> tuple[float | None, int]:
    """Best validation accuracy among the epochs finished by `budget_s`, and how many were."""
    done = [a for a, t in zip(run["val_curve"], run["epoch_train_s"], strict=True) if t <= budget_s * SLACK]
    return (max(done) if done else None), len(done)


def _secs(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def wall_clock_lines(group: list[dict[str, Any]]) -> list[str]:
    """Each SHA variant against MHA-Admin at the training seconds the faster of the two used.

    The faster variant is scored on its full runs; each run of the slower one on the epochs
    it had finished by the faster one's mean training time.
    """
    base = chosen_runs(group, BASELINE)
    lines = []
    for v in _present(group):
        if v == BASELINE or not base:
            continue
        runs = {BASELINE: base, v: chosen_runs(group, v)}
        times = {name: statistics.fmean(r["epoch_train_s"][-1] for r in rs) for name, rs in runs.items()}
        faster = min(times, key=times.get)
        budget = times[faster]
        parts = []
        for name, rs in runs.items():
            scored = [
                (r["val_accuracy"], len(r["val_curve"])) if name == faster else best_by(r, budget) for r in rs
            ]
            accs = [a for a, _ in scored if a is not None]
            epochs = "/".join(str(n) for _, n in scored)
            missing = (
                f", {len(scored) - len(accs)} run(s) without a finished epoch left out"
                if accs and len(accs) < len(scored)
                else ""
            )
            parts.append(
                f"{name} {_pm(accs) if accs else 'no epoch finished'} (epochs done: {epochs}{missing})"
            )
        lines.append(
            f"- at {_secs(budget)} s ({faster}'s full run; {BASELINE if faster == v else v} "
            f"needs {_secs(max(times.values()))} s), validation accuracy: " + "; ".join(parts)
        )
    return lines


def _per_epoch(runs: list[dict[str, Any]], key: str) -> float | None:
    """Mean seconds per epoch over runs (cumulative per-epoch `key`), None where not recorded."""
    per = [r[key][-1] / len(r[key]) for r in runs if r.get(key)]
    return statistics.fmean(per) if per else None


def convergence_lines(group: list[dict[str, Any]]) -> list[str]:
    """Per variant under early stopping: the best (kept) epoch, how many runs stopped before the
    cap, seconds per epoch and training seconds to the kept epoch."""
    cap, patience = group[0].get("epochs"), group[0].get("patience")
    lines = []
    for v in _present(group):
        runs = chosen_runs(group, v)
        kept = [(r, int(r["best_epoch"])) for r in runs if r.get("best_epoch")]
        if not kept:
            continue
        best = [b for _, b in kept]
        stopped = sum(1 for r in runs if r.get("stopped_early"))
        to_best = [r["epoch_train_s"][b - 1] for r, b in kept]
        train_pe, wall_pe = _per_epoch(runs, "epoch_train_s"), _per_epoch(runs, "epoch_wall_s")
        wall = f", {_secs(wall_pe)} s with validation" if wall_pe is not None else ""
        mean, sd = mean_std([float(b) for b in best])
        lines.append(
            f"- {v}: best epoch {mean:.1f} ± {sd:.1f} ({'/'.join(map(str, best))}); stopped early "
            f"{stopped}/{len(runs)} (the rest reached the {cap}-epoch cap); {_secs(train_pe or 0)} s per "
            f"epoch training{wall}; {_secs(statistics.fmean(to_best))} s of training to the best epoch"
        )
    return [f"Epochs to convergence (patience {patience}, cap {cap}):", "", *lines, ""] if lines else []


def lr_table(group: list[dict[str, Any]]) -> list[str]:
    """Every learning rate tried in the group, per variant: the sweep's evidence."""
    lrs = sorted({r["lr"] for r in group})
    if len(lrs) < 2:
        return []
    lines = ["| variant | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---" * (len(lrs) + 1) + "|"]
    for v in VARIANTS:
        cells = []
        for lr in lrs:
            rs = [r for r in group if r["variant"] == v and r["lr"] == lr]
            ok = [r["val_accuracy"] for r in rs if r.get("val_accuracy") is not None]
            cells.append(
                ("diverged" if rs else "") if not ok else f"{statistics.fmean(ok):.4f} (n={len(ok)})"
            )
        if any(cells):
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return lines


def group_section(group: list[dict[str, Any]]) -> list[str]:
    r0 = group[0]
    shown = [k for k in TERMS if k not in ("data_sha256", "recipe") and (k != "patience" or r0.get(k))]
    terms = ", ".join(f"{k} {r0.get(k)}" for k in shown)
    if r0.get("patience"):
        terms = terms.replace(
            f"epochs {r0.get('epochs')}", f"until converged (at most {r0.get('epochs')} epochs)"
        )
    devices = sorted({f"{r.get('device')} ({r.get('cpu', '?')}, {r.get('threads')} threads)" for r in group})
    out = [
        f"## {terms}",
        "",
        f"data {str(r0.get('data_sha256'))[:12]}, {r0.get('recipe')}; {len(group)} runs on {', '.join(devices)}",
        "",
    ]
    out += variant_table(group) + [""]
    out += convergence_lines(group) if r0.get("patience") else []
    out += ["Test accuracy, SHA − MHA:", "", *(difference_lines(group) or ["- (no MHA-Admin runs here)"]), ""]
    out += ["Equal wall-clock (training seconds, validation excluded):", ""]
    out += [*(wall_clock_lines(group) or ["- (no MHA-Admin runs here)"]), ""]
    diverged = [f"{r['variant']} lr {r['lr']:g} seed {r['seed']}" for r in group if r.get("diverged")]
    if diverged:
        out += [f"Diverged (loss not finite, never averaged): {'; '.join(diverged)}", ""]
    lrs = lr_table(group)
    return out + (["Validation accuracy per learning rate:", "", *lrs, ""] if lrs else [])


def summary_markdown(records: list[dict[str, Any]]) -> str:
    """The whole summary: one section per group of equal terms, the largest first."""
    out = [
        "# MHA vs SHA accuracy (seeded)",
        "",
        "Generated by `scripts/ablation.py` from `accuracy.json`; mean ± sample std over seeds, "
        "each variant at its chosen learning rate (the one with the most seeds).",
        "",
    ]
    if not records:
        return "\n".join([*out, "No records yet.", ""])
    for g in groups(records):
        out += group_section(g)
    return "\n".join(out)
