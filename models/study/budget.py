"""The accuracy-against-budget part of docs/accuracy.md: where each curve stops rising, the
budget a user would pick by validation accuracy, and the paper's claim judged there.

A budget is a run's epoch count E; every run's learning rate decays to zero at its own last
epoch, so each budget's model is annealed. Budgets with fewer than MIN_SEEDS seeds are shown
(marked) but never chosen, and the claim needs both architectures' chosen budgets.
"""

from __future__ import annotations

import statistics
from typing import Any

from contract.accuracy import (
    BASELINE,
    CLAIM_VARIANT,
    MIN_SEEDS,
    budgets,
    chosen_budget,
    early_stopped,
    epoch_seconds,
    mean_of,
    study_claim,
)
from contract.stats import mean_std, welch_interval

Budgets = dict[str, dict[int, list[dict[str, Any]]]]
# the budgets the study sets out to run (the 1-epoch rate sweep adds E = 1); 16 epochs was dropped
# from the plan once both architectures' validation fell from 4 to 8 epochs
TARGET_BUDGETS = (4, 8)
SLACK = 1.02  # within 2% of a time budget counts as within it (timing noise)


def pm(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{m:.4f} ± {s:.4f}" if len(values) > 1 else f"{m:.4f}"


def _all_runs(by_epochs: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r for runs in by_epochs.values() for r in runs]


def _ep(e: int) -> str:
    return f"{e} epoch{'' if e == 1 else 's'}"


def budget_table(b: Budgets) -> list[str]:
    """One row per variant and budget: seeds, rate, validation, test and each seed's test."""
    lines = [
        "| variant | epochs | seeds | lr | val acc | test acc | test acc per seed | train s / epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v, by_epochs in b.items():
        for e, runs in by_epochs.items():
            seeds = ", ".join(f"s{r['seed']} {r['test_accuracy']:.4f}" for r in runs)
            few = "" if len(runs) >= MIN_SEEDS else " (few)"
            lines.append(
                f"| {v} | {e} | {len(runs)}{few} | {runs[0]['lr']:g} | "
                f"{pm([r['val_accuracy'] for r in runs])} | {pm([r['test_accuracy'] for r in runs])} | "
                f"{seeds} | {epoch_seconds(runs) or 0:.0f} |"
            )
    return lines


def _diff_words(base: list[dict[str, Any]], other: list[dict[str, Any]]) -> str:
    a = [r["test_accuracy"] for r in base]
    c = [r["test_accuracy"] for r in other]
    diff = 100 * (statistics.fmean(c) - statistics.fmean(a))
    iv = welch_interval(a, c)
    if iv is None:
        return f"{diff:+.2f} points (no interval: needs ≥ 2 seeds of each)"
    verdict = "excludes 0" if iv.low > 0 or iv.high < 0 else "includes 0"
    return (
        f"{diff:+.2f} points, 95% interval [{100 * iv.low:+.2f}, {100 * iv.high:+.2f}] "
        f"(Welch, df {iv.df:.1f}; {verdict})"
    )


def difference_by_budget(b: Budgets) -> list[str]:
    """Each SHA variant − MHA-Admin test accuracy at every budget both ran."""
    base = b.get(BASELINE, {})
    lines = []
    for e in sorted({e for by_epochs in b.values() for e in by_epochs}):
        for v, by_epochs in b.items():
            if v == BASELINE or e not in by_epochs or e not in base:
                continue
            n = (len(base[e]), len(by_epochs[e]))
            few = f"; fewer than {MIN_SEEDS} seeds" if min(n) < MIN_SEEDS else ""
            lines.append(
                f"- {_ep(e)}, {v} − {BASELINE} ({n[1]} vs {n[0]} seeds{few}): "
                f"{_diff_words(base[e], by_epochs[e])}"
            )
    return lines


def curve_lines(b: Budgets) -> list[str]:
    """Per variant: mean validation accuracy at each budget, where it peaks, the chosen budget."""
    lines = []
    for v, by_epochs in b.items():
        val = {e: mean_of(runs, "val_accuracy") for e, runs in by_epochs.items()}
        steps = " → ".join(f"{val[e]:.4f} ({e} ep, n={len(by_epochs[e])})" for e in by_epochs)
        peak, last = max(val, key=val.get), max(val)
        if len(val) == 1:
            shape = "one budget so far"
        elif peak == last:
            shape = f"still rising at {last} epochs, the longest budget run"
        else:
            later = [e for e in val if e > peak]
            drop = ", ".join(f"{100 * (val[e] - val[peak]):+.2f} points at {e}" for e in later)
            shape = f"stops rising at {peak} epochs and falls after it ({drop})"
        chosen = chosen_budget(by_epochs)
        pick = f"chosen budget {chosen} epochs" if chosen else f"no budget with ≥ {MIN_SEEDS} seeds yet"
        lines.append(f"- {v}: validation {steps}; {shape}; {pick}.")
    return lines


def wall_clock_by_budget(b: Budgets) -> list[str]:
    """Each SHA variant's budgets against MHA-Admin's best budget that trains in no more time."""
    base = b.get(BASELINE)
    if not base:
        return []
    base_s = epoch_seconds(_all_runs(base)) or 0.0
    lines = []
    for v, by_epochs in b.items():
        per = epoch_seconds(_all_runs(by_epochs))
        if v == BASELINE or per is None:
            continue
        for e, runs in by_epochs.items():
            t = e * per
            fits = {m: rs for m, rs in base.items() if m * base_s <= t * SLACK}
            if not fits:
                continue
            m = chosen_budget(fits) or max(fits, key=lambda k: mean_of(fits[k], "val_accuracy"))
            lines.append(
                f"- {v} at {_ep(e)} (~{t:.0f} s of training): {BASELINE}'s best budget within that "
                f"time is {_ep(m)} (~{m * base_s:.0f} s); test accuracy {v} − {BASELINE} "
                f"{_diff_words(fits[m], runs)}"
            )
    return lines


def _too_few(b: Budgets) -> str:
    """'8 epochs (mha-admin 2, sha-admin 2)' or ''."""
    parts = []
    for e in TARGET_BUDGETS:
        n = {v: len(b.get(v, {}).get(e, [])) for v in (BASELINE, CLAIM_VARIANT)}
        if min(n.values()) < MIN_SEEDS:
            parts.append(f"{e} epochs ({', '.join(f'{v} {k}' for v, k in n.items())})")
    return ", ".join(parts)


def claim_sentence(records: list[dict[str, Any]]) -> str:
    """Whether the paper's claim (deep SHA with Admin matches or beats shallow MHA) holds here."""
    b = budgets(records)
    few = _too_few(b)
    few_words = f" Budgets with fewer than {MIN_SEEDS} seeds so far: {few}." if few else ""
    claim = study_claim(records)
    if claim is None:
        return (
            f"Not judged yet: the claim needs a budget with ≥ {MIN_SEEDS} seeds of both {BASELINE} "
            f"and {CLAIM_VARIANT}.{few_words}"
        )
    iv = claim.interval
    at = (
        f"with each at the budget its validation accuracy picks ({BASELINE} {claim.mha.epochs} epochs, "
        f"{CLAIM_VARIANT} {claim.sha.epochs} epochs; {len(claim.mha.runs)} and {len(claim.sha.runs)} seeds), "
        f"test accuracy {claim.words()}"
    )
    if iv is None:
        verdict = "cannot be judged (no interval)"
    elif iv.low > 0:
        verdict = "holds: the deep single-head model beats the shallow multi-head one beyond seed noise"
    elif iv.high < 0:
        verdict = "does not hold: the deep single-head model is behind beyond seed noise"
    else:
        verdict = (
            "holds in its weaker form: the two are equally accurate within seed noise "
            "(SHA matches MHA; a win for SHA is not seen)"
        )
    return f"At this scale the paper's claim {verdict}; {at}.{few_words}"


def early_stopped_lines(records: list[dict[str, Any]]) -> list[str]:
    """The retired early-stopping runs, shown as what they are: not annealed, left out."""
    lines = []
    for r in records:
        if not early_stopped(r) or r.get("val_accuracy") is None:
            continue
        lines.append(
            f"- {r['variant']} lr {r['lr']:g} seed {r['seed']}: early stopping with patience "
            f"{r['patience']} under a schedule spanning {r['epochs']} epochs; stopped after epoch "
            f"{len(r['val_curve'])} (best {r.get('best_epoch')}) with the learning rate still high; "
            f"validation {r['val_accuracy']:.4f}, test {r['test_accuracy']:.4f}."
        )
    return lines


def budget_section(records: list[dict[str, Any]]) -> list[str]:
    """The study's Markdown: claim, table, differences, curves, equal time, early-stopped runs."""
    b = budgets(records)
    if not b:
        return ["No fixed-budget records yet.", ""]
    out = ["## The claim", "", claim_sentence(records), ""]
    runs = [r for by_epochs in b.values() for rs in by_epochs.values() for r in rs]
    machines = sorted({f"{r.get('device')} ({r.get('cpu', '?')}, {r.get('threads')} threads)" for r in runs})
    out += ["## Test accuracy against training budget", "", *budget_table(b), ""]
    out += [
        f"Trained on {', '.join(machines)}. Each run's learning rate warms up, then decays linearly to zero at its own last epoch; the "
        "kept weights are the best validation epoch's. (few): fewer than "
        f"{MIN_SEEDS} seeds, shown but never chosen. Training seconds per epoch: the median epoch of the least-loaded run (other processes shared "
        "the machine during some runs).",
        "",
        "## SHA − MHA at each budget (test accuracy)",
        "",
        *(difference_by_budget(b) or ["- (no budget with both)"]),
        "",
        "## Where each curve stops rising (validation accuracy, mean over seeds)",
        "",
        *curve_lines(b),
        "",
        "## Equal training time",
        "",
        "Training seconds per epoch (validation excluded; each variant's least-loaded run's median "
        "epoch) times the budget; MHA-Admin's candidates are the budgets that were run, chosen by "
        "validation accuracy among those that fit.",
        "",
        *(wall_clock_by_budget(b) or ["- (no MHA-Admin runs)"]),
        "",
    ]
    stopped = early_stopped_lines(records)
    if stopped:
        out += [
            "## Early-stopped runs (evidence only, not converged)",
            "",
            "An earlier mode stopped runs once validation accuracy had not improved for `patience` "
            "epochs while the schedule still spanned the epoch cap, so they stopped un-annealed. They "
            "stay in the records and out of every comparison above.",
            "",
            *stopped,
            "",
        ]
    return out
