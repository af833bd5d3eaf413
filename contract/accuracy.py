"""Seeded accuracy records (docs/accuracy.json): one object per training run, and the study they form.

The ablation (models.ablation) writes the records; its report (models.study.report) and the
load report's which-model answer (loadtest.report) read them, so the format lives here, torch-free.

A record is only compared with records trained on equal terms: same data (the split's
sha256), preset, epochs, patience, attention init, batch size, max length, dropout and recipe.
Those fields form a record's `terms`; the summary works group by group. Within a group each
variant's learning rate is the one with the most seeds (the rate the ablation picked), so sweep
runs at other rates never mix into the seeded mean.

Every run trains all its epochs with the learning rate decaying to zero at the last one, so
`epochs` is a training budget E. Runs of one study differ only in E (`budgets`); a user would
pick each architecture's budget by validation accuracy (`chosen_budget`), and the paper's claim
is judged there (`study_claim`). Records with `patience` set come from an earlier early-stopping
mode whose schedule spanned the epoch cap: kept as evidence, never part of the study.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import atomic
from contract.stats import Interval, mean_std, welch_interval

VARIANTS: dict[str, tuple[str, str]] = {
    "mha-admin": ("mha", "admin"),
    "sha-admin": ("sha", "admin"),
    "sha-pre": ("sha", "pre"),
    "sha-post": ("sha", "post"),
}
BASELINE = "mha-admin"
# patience: set only on records of the retired early-stopping mode (epochs was then its cap);
# fixed-budget records have none or null, and must keep that so their run keys stay the same
TERMS = (
    "preset",
    "epochs",
    "patience",
    "attn_init",
    "batch_size",
    "max_len",
    "dropout",
    "data_sha256",
    "recipe",
)
# the rest of the training recipe (flags or H2H_TRAIN_* env vars): records differing here never mix
RECIPE_FIELDS = (
    "weight_decay",
    "warmup_frac",
    "clip_norm",
    "min_freq",
    "max_vocab",
    "max_steps",
    "split_seed",
)
RUN_KEY = ("variant", "lr", "seed", *TERMS)


class RecordsError(ValueError):
    """The records file exists but is not a JSON list of objects."""


def load_records(path: Path) -> list[dict[str, Any]]:
    """Every record in `path` ([] when the file does not exist yet)."""
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RecordsError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise RecordsError(f"{path} must hold a JSON list of run records")
    return data


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`'s folder, so two ablations appending at once lose no record.

    The folder, not the file: the file is replaced by rename on every write, and a lock file
    would be one more stray file in docs/.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record: read, extend and rewrite atomically under the lock."""
    with _locked(path):
        records = load_records(path)
        records.append(record)
        atomic.write_json(path, records)


def run_key(record: dict[str, Any]) -> tuple:
    """What makes two records the same deterministic run (so a finished run is not retrained)."""
    return tuple(record.get(k) for k in RUN_KEY)


def recipe(settings: dict[str, Any]) -> str:
    """The recipe fields of a run's settings as one comparable string."""
    return ",".join(f"{k}={settings.get(k)}" for k in RECIPE_FIELDS)


def terms_of(record: dict[str, Any]) -> tuple:
    return tuple(record.get(k) for k in TERMS)


def record_from_metrics(variant: str, lr: float, seed: int, phase: str, m: dict[str, Any]) -> dict[str, Any]:
    """The record of one finished run, from the metrics models.train.train returned."""
    s = m["settings"]
    return {
        "variant": variant,
        "phase": phase,
        "seed": seed,
        "lr": lr,
        "epochs": m["epochs"],
        "test_accuracy": m["test_accuracy"],
        "val_accuracy": m["validation_accuracy"],
        "val_curve": m["val_curve"],
        "epoch_train_s": m["epoch_train_s"],
        "epoch_wall_s": m["epoch_wall_s"],
        "best_epoch": m["best_epoch"],
        "epochs_run": m["epochs_run"],
        "train_seconds": m["train_time_s"],
        "attn_init": m["attn_init"],
        "preset": m["preset"],
        "arch": m["arch"],
        "norm": m["norm"],
        "layers": m["layers"],
        "heads": m["heads"],
        "params": m["params"],
        "batch_size": s["batch_size"],
        "max_len": m["max_len"],
        "dropout": s["dropout"],
        "steps": m["steps"],
        "data_sha256": m["data_sha256"],
        "device": m["device"],
        "threads": m["threads"],
        "torch": m["torch"],
        "recipe": recipe(s),
    }


def diverged_record(variant: str, lr: float, seed: int, phase: str, terms: dict[str, Any], why: str) -> dict:
    """A run whose loss stopped being finite: kept (it is a result), never averaged."""
    return {
        "variant": variant,
        "phase": phase,
        "seed": seed,
        "lr": lr,
        **terms,
        "diverged": why,
        "test_accuracy": None,
        "val_accuracy": None,
        "val_curve": [],
        "epoch_train_s": [],
    }


def groups(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Records split by equal terms; the seeded group first, not a (larger) one-seed-per-rate sweep.

    Order: most seeds of one variant at one rate, then most runs.
    """
    by: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault(terms_of(r), []).append(r)
    return sorted(by.values(), key=lambda g: (-max(len(chosen_runs(g, v)) for v in VARIANTS), -len(g)))


def chosen_runs(group: list[dict[str, Any]], variant: str) -> list[dict[str, Any]]:
    """The variant's finished runs at its chosen rate: most seeds, then best mean validation."""
    by_lr: dict[float, list[dict[str, Any]]] = {}
    for r in group:
        if r["variant"] == variant and r.get("val_accuracy") is not None:
            by_lr.setdefault(r["lr"], []).append(r)
    if not by_lr:
        return []
    best = max(by_lr.values(), key=lambda rs: (len(rs), sum(r["val_accuracy"] for r in rs) / len(rs)))
    return sorted(best, key=lambda r: r["seed"])


def best_lr(records: list[dict[str, Any]], variant: str, lrs: list[float], terms: tuple, seed: int) -> float:
    """The swept rate with the highest validation accuracy for `variant` (diverged = worst)."""
    score = {lr: -1.0 for lr in lrs}
    for r in records:
        if r["variant"] == variant and terms_of(r) == terms and r["seed"] == seed and r["lr"] in score:
            score[r["lr"]] = max(
                score[r["lr"]], r["val_accuracy"] if r.get("val_accuracy") is not None else -1
            )
    return max(lrs, key=lambda lr: score[lr])


# --- the study: accuracy against training budget ------------------------------------------------

MIN_SEEDS = 3  # a budget with fewer seeds of a variant is shown, but never chosen
CLAIM_VARIANT = "sha-admin"  # the paper's claim: deep single-head with Admin vs shallow multi-head


def early_stopped(record: dict[str, Any]) -> bool:
    """A record of the retired early-stopping mode (its schedule had not decayed when it stopped)."""
    return bool(record.get("patience"))


def _study_terms(record: dict[str, Any]) -> tuple:
    return tuple(record.get(k) for k in TERMS if k not in ("epochs", "patience"))


def budgets(records: list[dict[str, Any]]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Per variant, per budget E (epochs): its finished runs at the rate chosen at that budget.

    From the largest study: fixed-budget records on equal terms except for epochs (the one with
    the most finished runs when records from several setups are present).
    """
    studies: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if not early_stopped(r):
            studies.setdefault(_study_terms(r), []).append(r)
    if not studies:
        return {}
    study = max(studies.values(), key=lambda rs: sum(r.get("val_accuracy") is not None for r in rs))
    by_epochs: dict[int, list[dict[str, Any]]] = {}
    for r in study:
        by_epochs.setdefault(int(r["epochs"]), []).append(r)
    out: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for v in VARIANTS:
        for e in sorted(by_epochs):
            runs = chosen_runs(by_epochs[e], v)
            if runs:
                out.setdefault(v, {})[e] = runs
    return out


def mean_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(float(r[key]) for r in runs)


def chosen_budget(by_epochs: dict[int, list[dict[str, Any]]]) -> int | None:
    """The budget a user would pick: the best mean validation accuracy among budgets with at
    least MIN_SEEDS seeds (None while no budget has that many)."""
    ready = {e: runs for e, runs in by_epochs.items() if len(runs) >= MIN_SEEDS}
    return max(ready, key=lambda e: mean_of(ready[e], "val_accuracy")) if ready else None


def _median_epoch(run: dict[str, Any]) -> float | None:
    t = [0.0, *run.get("epoch_train_s", [])]
    steps = [b - a for a, b in zip(t, t[1:], strict=False)]
    return statistics.median(steps) if steps else None


def epoch_seconds(runs: list[dict[str, Any]]) -> float | None:
    """Training seconds per epoch: each run's median epoch, the lowest over the runs.

    Other processes on a shared machine only ever slow an epoch down, so the least-loaded run
    is the closest to the model's own speed; the median keeps one slow epoch from moving it.
    """
    per = [m for m in map(_median_epoch, runs) if m is not None]
    return min(per) if per else None


@dataclass(frozen=True)
class Side:
    """One variant at its chosen budget: the runs, and their test accuracy's mean and std."""

    variant: str
    epochs: int
    runs: list[dict[str, Any]]

    @property
    def test(self) -> list[float]:
        return [float(r["test_accuracy"]) for r in self.runs]

    def words(self) -> str:
        """'0.7978 ± 0.0023 (4 epochs, 5 seeds)'"""
        m, sd = mean_std(self.test)
        return f"{m:.4f} ± {sd:.4f} ({self.epochs} epochs, {len(self.runs)} seeds)"


@dataclass(frozen=True)
class Claim:
    """SHA − MHA test accuracy with each at its chosen budget (Welch 95% interval)."""

    mha: Side
    sha: Side
    interval: Interval | None

    @property
    def diff(self) -> float:
        return statistics.fmean(self.sha.test) - statistics.fmean(self.mha.test)

    def words(self) -> str:
        """'SHA − MHA -0.30 points, 95% interval [-0.78, +0.18]'"""
        iv = self.interval
        tail = f", 95% interval [{100 * iv.low:+.2f}, {100 * iv.high:+.2f}]" if iv else " (no interval)"
        return f"SHA − MHA {100 * self.diff:+.2f} points{tail}"


def chosen_sides(records: list[dict[str, Any]]) -> dict[str, Side]:
    """Every variant that has a chosen budget, at that budget."""
    out = {}
    for v, by_epochs in budgets(records).items():
        e = chosen_budget(by_epochs)
        if e is not None:
            out[v] = Side(v, e, by_epochs[e])
    return out


def study_claim(records: list[dict[str, Any]], variant: str = CLAIM_VARIANT) -> Claim | None:
    """`variant` against MHA-Admin, each at its own chosen budget (None until both have one)."""
    sides = chosen_sides(records)
    if BASELINE not in sides or variant not in sides:
        return None
    mha, sha = sides[BASELINE], sides[variant]
    return Claim(mha, sha, welch_interval(mha.test, sha.test))
