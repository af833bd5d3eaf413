"""Accuracy records: equal-terms grouping, chosen rate, budgets and the claim, SHA - MHA, equal time, safe appends."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from contract.accuracy import (
    RecordsError,
    append_record,
    best_lr,
    budgets,
    chosen_budget,
    chosen_runs,
    epoch_seconds,
    groups,
    load_records,
    study_claim,
    terms_of,
)
from models.study.budget import claim_sentence, curve_lines, wall_clock_by_budget
from models.study.report import best_by, summary_markdown, wall_clock_lines

TERMS = {
    "preset": "small",
    "epochs": 3,
    "attn_init": "combined",
    "batch_size": 64,
    "max_len": 64,
    "dropout": 0.1,
    "data_sha256": "abc",
}


def rec(
    variant: str,
    seed: int,
    test: float,
    *,
    lr: float = 1e-3,
    curve=(0.5, 0.6, 0.7),
    secs=(10, 20, 30),
    **over,
) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "lr": lr,
        "test_accuracy": test,
        "val_accuracy": max(curve),
        "val_curve": list(curve),
        "epoch_train_s": list(secs),
        "device": "cpu",
        "threads": 2,
        **TERMS,
        **over,
    }


def test_groups_never_mix_terms_and_the_largest_comes_first() -> None:
    records = [
        rec("mha-admin", 1, 0.8),
        rec("mha-admin", 2, 0.8),
        rec("mha-admin", 1, 0.7, epochs=1),
        rec("sha-admin", 1, 0.8, data_sha256="other"),
    ]
    gs = groups(records)
    assert [len(g) for g in gs] == [2, 1, 1]
    assert all(len({terms_of(r) for r in g}) == 1 for g in gs)
    # a 1-epoch sweep (one seed per rate, more runs) comes after the seeded group
    sweep = [rec(v, 1, 0.6, lr=lr, epochs=1) for v in ("mha-admin", "sha-admin") for lr in (2e-3, 4e-3, 8e-3)]
    assert groups(sweep + records)[0][0]["epochs"] == 3


def test_chosen_rate_is_the_one_with_most_seeds_and_diverged_runs_are_not_averaged() -> None:
    group = [
        rec("sha-admin", 1, 0.9, lr=3e-3, curve=(0.95,)),
        rec("sha-admin", 1, 0.7),
        rec("sha-admin", 2, 0.72),
        {**rec("sha-admin", 3, 0.0), "diverged": "nan", "val_accuracy": None, "test_accuracy": None},
    ]
    runs = chosen_runs(group, "sha-admin")
    assert [(r["lr"], r["seed"]) for r in runs] == [(1e-3, 1), (1e-3, 2)]
    sweep = [
        rec("sha-admin", 1, 0.7, lr=1e-3, curve=(0.6,)),
        rec("sha-admin", 1, 0.7, lr=2e-3, curve=(0.65,)),
        {**rec("sha-admin", 1, 0.0, lr=4e-3), "val_accuracy": None, "diverged": "inf"},
    ]
    assert best_lr(sweep, "sha-admin", [1e-3, 2e-3, 4e-3], terms_of(sweep[0]), 1) == 2e-3


def test_summary_states_mean_std_and_the_welch_interval() -> None:
    records = [rec("mha-admin", s, t) for s, t in ((1, 0.80), (2, 0.81), (3, 0.79))]
    records += [rec("sha-admin", s, t) for s, t in ((1, 0.78), (2, 0.785), (3, 0.775))]
    md = summary_markdown(records)
    assert "| mha-admin | 3 | 0.001 | 0.7000 ± 0.0000 | 0.8000 ± 0.0100 | 30.0 | 0 |" in md
    assert "| sha-admin | 3 | 0.001 | 0.7000 ± 0.0000 | 0.7800 ± 0.0050 |" in md
    # diff -2.00 points; se = sqrt(1e-4/3 + 2.5e-5/3), df 2.94, t 3.22 -> half-width 2.08 points
    assert (
        "sha-admin − mha-admin: -2.00 points, 95% interval [-4.08, +0.08] (Welch, df 2.9; includes 0)" in md
    )


def test_equal_wall_clock_scores_the_slower_model_on_the_epochs_it_finished() -> None:
    fast = [rec("mha-admin", s, 0.8, curve=(0.60, 0.70, 0.75), secs=(10, 20, 30)) for s in (1, 2)]
    slow = [
        rec("sha-admin", 1, 0.8, curve=(0.50, 0.65, 0.80), secs=(14, 29, 45)),
        rec("sha-admin", 2, 0.8, curve=(0.52, 0.67, 0.82), secs=(16, 31, 47)),
    ]
    assert best_by(slow[0], 30) == (0.65, 2) and best_by(slow[1], 30) == (0.52, 1)
    (line,) = wall_clock_lines(fast + slow)
    assert line.startswith("- at 30.0 s (mha-admin's full run; sha-admin needs 46.0 s)")
    assert "mha-admin 0.7500 ± 0.0000 (epochs done: 3/3)" in line
    assert "sha-admin 0.5850 ± 0.0919 (epochs done: 2/1)" in line


def _budget_runs(
    variant: str, epochs: int, vals: list[float], tests: list[float], epoch_s: float
) -> list[dict]:
    """Fixed-budget runs of one variant: seed i has validation vals[i] (its curve ends there)."""
    return [
        rec(
            variant,
            seed,
            test,
            lr=2e-3,
            curve=[val - 0.01 * (epochs - i) for i in range(1, epochs + 1)],
            secs=[epoch_s * i for i in range(1, epochs + 1)],
            epochs=epochs,
        )
        for seed, (val, test) in enumerate(zip(vals, tests, strict=True), start=1)
    ]


def _study() -> list[dict]:
    """MHA peaks at 4 epochs (falls at 8); SHA still rises to 8, but its 8 has only 2 seeds."""
    return [
        *_budget_runs("mha-admin", 4, [0.80, 0.81, 0.80], [0.79, 0.80, 0.79], 10),
        *_budget_runs("mha-admin", 8, [0.79, 0.79, 0.795], [0.78, 0.785, 0.78], 10),
        *_budget_runs("sha-admin", 4, [0.79, 0.80, 0.795], [0.785, 0.79, 0.78], 20),
        *_budget_runs("sha-admin", 8, [0.82, 0.83], [0.81, 0.82], 20),
        {**rec("mha-admin", 1, 0.77, lr=2e-3, epochs=16), "patience": 2, "best_epoch": 5},
    ]


def _shift_sha(by: float) -> list[dict]:
    return [
        {**r, "test_accuracy": r["test_accuracy"] + by} if r["variant"] == "sha-admin" else r
        for r in _study()
    ]


def test_budgets_choose_by_validation_among_budgets_with_enough_seeds() -> None:
    b = budgets(_study())
    assert {v: {e: len(rs) for e, rs in d.items()} for v, d in b.items()} == {
        "mha-admin": {4: 3, 8: 3},
        "sha-admin": {4: 3, 8: 2},
    }  # the early-stopped run is no budget of the study
    assert chosen_budget(b["mha-admin"]) == 4
    assert chosen_budget(b["sha-admin"]) == 4  # 8 has the better validation but only 2 seeds
    claim = study_claim(_study())
    assert claim is not None and (claim.mha.epochs, claim.sha.epochs) == (4, 4)
    assert claim.words() == ("SHA − MHA -0.83 points, 95% interval [-2.07, +0.40]")


def test_the_report_says_where_each_curve_stops_and_judges_the_claim() -> None:
    mha, sha = curve_lines(budgets(_study()))
    assert "stops rising at 4 epochs and falls after it (-1.17 points at 8); chosen budget 4 epochs" in mha
    assert "still rising at 8 epochs, the longest budget run; chosen budget 4 epochs" in sha
    sentence = claim_sentence(_study())
    assert sentence.startswith("At this scale the paper's claim holds in its weaker form")
    assert "(mha-admin 4 epochs, sha-admin 4 epochs; 3 and 3 seeds)" in sentence
    assert sentence.endswith("Budgets with fewer than 3 seeds so far: 8 epochs (mha-admin 3, sha-admin 2).")
    assert "does not hold: the deep single-head model is behind" in claim_sentence(_shift_sha(-0.05))
    assert "holds: the deep single-head model beats" in claim_sentence(_shift_sha(+0.05))
    assert claim_sentence(_study()[:3]).startswith("Not judged yet")


def test_equal_training_time_pits_each_budget_against_the_best_mha_budget_that_fits() -> None:
    """SHA's epochs take 20 s, MHA's 10 s: SHA's 8 epochs (160 s) fit MHA's 4 and 8 (40, 80 s),
    and MHA's validation picks 4 among them."""
    four, eight = wall_clock_by_budget(budgets(_study()))
    assert four.startswith(
        "- sha-admin at 4 epochs (~80 s of training): mha-admin's best budget within that time is 4 epochs (~40 s)"
    )
    assert "at 8 epochs (~160 s" in eight and "within that time is 4 epochs" in eight


def test_epoch_seconds_is_the_least_loaded_runs_median_epoch() -> None:
    quiet = rec("mha-admin", 1, 0.8, secs=(10, 21, 30))
    loaded = rec("mha-admin", 2, 0.8, secs=(50, 70, 90))  # a neighbour slowed every epoch
    assert epoch_seconds([quiet, loaded]) == 10


def test_early_stopped_runs_are_shown_as_evidence_not_as_a_group() -> None:
    md = summary_markdown(_study(), "accuracy.png")
    assert "## Early-stopped runs (evidence only, not converged)" in md
    assert (
        "- mha-admin lr 0.002 seed 1: early stopping with patience 2 under a schedule spanning 16 epochs"
        in md
    )
    assert "epochs 16" not in md  # no group section of its own
    assert "![Accuracy against budget and validation curves](accuracy.png)" in md


def test_the_committed_records_still_summarise() -> None:
    records = load_records(Path(__file__).resolve().parents[2] / "docs" / "accuracy.json")
    md = summary_markdown(records)
    assert "## The claim" in md and "## Test accuracy against training budget" in md
    assert "### preset small, epochs 4, attn_init combined" in md and "sha-admin − mha-admin:" in md


def _append_many(path: str, worker: int) -> None:
    for i in range(10):
        append_record(Path(path), {"worker": worker, "i": i})


def test_concurrent_appends_lose_no_record(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "accuracy.json"
    procs = [
        multiprocessing.get_context("fork").Process(target=_append_many, args=(str(path), w))
        for w in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    records = load_records(path)
    assert sorted((r["worker"], r["i"]) for r in records) == [(w, i) for w in range(4) for i in range(10)]
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_records_file_must_be_a_list(tmp_path: Path) -> None:
    path = tmp_path / "accuracy.json"
    assert load_records(path) == []
    path.write_text(json.dumps({"variant": "mha-admin"}))
    with pytest.raises(RecordsError, match="JSON list"):
        load_records(path)
    path.write_text("[{")
    with pytest.raises(RecordsError, match="not valid JSON"):
        load_records(path)
