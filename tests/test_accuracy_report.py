"""Accuracy records: equal-terms grouping, chosen rate, SHA - MHA, equal wall-clock, safe appends."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from models.accuracy import (
    RecordsError,
    append_record,
    best_lr,
    chosen_runs,
    groups,
    load_records,
    terms_of,
)
from models.accuracy_report import best_by, summary_markdown, wall_clock_lines

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


def test_convergence_group_reports_epochs_to_convergence_and_the_interval() -> None:
    """Early-stopped runs (cap 6, patience 2) group apart from fixed-epoch runs and report the
    kept epoch, early stops, seconds per epoch and the Welch interval at convergence."""
    conv = dict(epochs=6, patience=2)
    mha = [
        rec(
            "mha-admin",
            seed,
            test,
            curve=(0.6, 0.7, top, top - 0.01, top - 0.02),
            secs=(10, 20, 30, 40, 50),
            best_epoch=3,
            stopped_early=True,
            epoch_wall_s=[11, 22, 33, 44, 55],
            **conv,
        )
        for seed, test, top in ((1, 0.80, 0.72), (2, 0.81, 0.73))
    ]
    curve6 = (0.5, 0.6, 0.65, 0.7, 0.72, 0.74)
    sha = [
        rec(
            "sha-admin",
            s,
            t,
            curve=curve6,
            secs=(20, 40, 60, 80, 100, 120),
            best_epoch=6,
            stopped_early=False,
            **conv,
        )
        for s, t in ((1, 0.79), (2, 0.795))
    ]
    fixed = [rec("mha-admin", 1, 0.7), rec("mha-admin", 2, 0.7)]  # no patience: an older group
    records = fixed + mha + sha
    gs = groups(records)
    assert sorted(len(g) for g in gs) == [2, 4]
    md = summary_markdown(records)
    assert "## preset small, until converged (at most 6 epochs), patience 2, attn_init combined" in md
    assert "## preset small, epochs 3, attn_init combined" in md  # the older group, no patience shown
    assert "Epochs to convergence (patience 2, cap 6):" in md
    assert (
        "- mha-admin: best epoch 3.0 ± 0.0 (3/3); stopped early 2/2 (the rest reached the 6-epoch cap); "
        "10.0 s per epoch training, 11.0 s with validation; 30.0 s of training to the best epoch"
    ) in md
    assert (
        "- sha-admin: best epoch 6.0 ± 0.0 (6/6); stopped early 0/2" in md
        and "20.0 s per epoch training;" in md
    )
    assert "sha-admin − mha-admin: -1.25 points, 95% interval [" in md
    # equal wall-clock: mha's 50 s runs against sha's epochs finished by then (2 of 6)
    assert "at 50.0 s (mha-admin's full run; sha-admin needs 120 s)" in md and "(epochs done: 2/2)" in md


def test_the_committed_records_still_summarise() -> None:
    records = load_records(Path(__file__).resolve().parents[1] / "docs" / "accuracy.json")
    md = summary_markdown(records)
    assert "patience" not in md and "Epochs to convergence" not in md
    assert "## preset small, epochs 4, attn_init combined" in md and "sha-admin − mha-admin:" in md


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
