"""docs/accuracy.md from the records: the study against training budget (models.study.budget),
then the details of each group of equal terms (one budget each): mean ± std, SHA − MHA, equal
wall-clock within the runs, and every learning rate tried.

Every comparison stays inside one group of equal terms (contract.accuracy.groups). The
within-run equal wall-clock is read off the per-epoch records: the faster model's mean training
seconds set the budget T, and each run of the other model is scored by the best validation
accuracy among the epochs it had finished by T (what stopping there would have kept). The
learning-rate schedule of such a cut run had not decayed yet, so this understates the slower
model; it is a bound, not a retrained run (the study's equal-time comparison uses whole runs).
"""

from __future__ import annotations

import statistics
from typing import Any

from contract.accuracy import BASELINE, TERMS, VARIANTS, chosen_runs, early_stopped, groups
from contract.stats import welch_interval
from models.study.budget import SLACK, budget_section, pm


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
            f"| {v} | {len(runs)} | {lr:g} | {pm([r['val_accuracy'] for r in runs])} | "
            f"{pm([r['test_accuracy'] for r in runs])} | "
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
                f"{name} {pm(accs) if accs else 'no epoch finished'} (epochs done: {epochs}{missing})"
            )
        lines.append(
            f"- at {_secs(budget)} s ({faster}'s full run; {BASELINE if faster == v else v} "
            f"needs {_secs(max(times.values()))} s), validation accuracy: " + "; ".join(parts)
        )
    return lines


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
    shown = [k for k in TERMS if k not in ("data_sha256", "recipe", "patience")]
    terms = ", ".join(f"{k} {r0.get(k)}" for k in shown)
    devices = sorted({f"{r.get('device')} ({r.get('cpu', '?')}, {r.get('threads')} threads)" for r in group})
    out = [
        f"### {terms}",
        "",
        f"data {str(r0.get('data_sha256'))[:12]}, {r0.get('recipe')}; {len(group)} runs on {', '.join(devices)}",
        "",
    ]
    out += variant_table(group) + [""]
    out += ["Test accuracy, SHA − MHA:", "", *(difference_lines(group) or ["- (no MHA-Admin runs here)"]), ""]
    out += ["Equal wall-clock within the runs (training seconds, validation excluded):", ""]
    out += [*(wall_clock_lines(group) or ["- (no MHA-Admin runs here)"]), ""]
    diverged = [f"{r['variant']} lr {r['lr']:g} seed {r['seed']}" for r in group if r.get("diverged")]
    if diverged:
        out += [f"Diverged (loss not finite, never averaged): {'; '.join(diverged)}", ""]
    lrs = lr_table(group)
    return out + (["Validation accuracy per learning rate:", "", *lrs, ""] if lrs else [])


def summary_markdown(records: list[dict[str, Any]], plot: str | None = None) -> str:
    """The whole summary: the study against budget, then one section per group of equal terms
    (largest first; early-stopped groups appear only as the study's evidence list)."""
    out = [
        "# MHA vs SHA accuracy against training budget (seeded)",
        "",
        "Generated by `python -m models.ablation` (`--summary-only` rewrites it) from `accuracy.json`; "
        "mean ± sample std over seeds, each variant at its chosen learning rate (the one with the "
        "most seeds).",
        "",
    ]
    if not records:
        return "\n".join([*out, "No records yet.", ""])
    out += budget_section(records)
    if plot:
        out += [f"![Accuracy against budget and validation curves]({plot})", ""]
    out += ["## Details per group of equal terms", ""]
    for g in groups(records):
        if not early_stopped(g[0]):
            out += group_section(g)
    return "\n".join(out)
