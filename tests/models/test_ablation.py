"""python -m models.ablation on the fixture: sweep, seeds at the best rate, records, summary, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models.ablation", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _assert_sweep_then_seeds(records: list[dict], stdout: str) -> None:
    """2 variants x 2 rates swept with seed 1 (reused as seed 1: same epochs), then seed 2 at the
    best rate; every record complete, all on one split and one recipe."""
    assert len(records) == 6
    for v in ("mha-admin", "sha-admin"):
        sweep = {
            rec["lr"]: rec["val_accuracy"] for rec in records if rec["variant"] == v and rec["seed"] == 1
        }
        best = max(sweep, key=sweep.get)
        assert f"{v}: best learning rate {best:g}" in stdout
        (seed2,) = [rec for rec in records if rec["variant"] == v and rec["seed"] == 2]
        assert seed2["lr"] == best and seed2["phase"] == "seed"
    for rec in records:
        assert rec["epochs"] == 2 and rec["attn_init"] == "combined" and rec["device"] == "cpu"
        assert len(rec["val_curve"]) == 2 and 0 < rec["epoch_train_s"][0] < rec["epoch_train_s"][1]
        assert rec["val_accuracy"] == max(rec["val_curve"]) and 0 <= rec["test_accuracy"] <= 1
        assert rec["train_seconds"] >= rec["epoch_train_s"][-1]
    assert len({rec["data_sha256"] for rec in records}) == 1  # every seed on the same split
    assert {rec["recipe"] for rec in records} == {
        "weight_decay=0.01,warmup_frac=0.06,clip_norm=1.0,min_freq=2,max_vocab=30000,max_steps=None,split_seed=13"
    }


@pytest.mark.slow
def test_sweep_then_seeds_records_summary_plot_and_resume(tmp_path: Path, wordnet_dir: Path) -> None:
    out = tmp_path / "docs" / "accuracy.json"
    common = (
        "--preset",
        "tiny",
        "--wordnet-dir",
        str(wordnet_dir),
        "--out",
        str(out),
        "--runs",
        str(tmp_path / "runs"),
    )
    sweep = ("--variants", "mha-admin,sha-admin", "--lrs", "1e-3,3e-3", "--seeds", "2", "--epochs", "2")
    r = _run(*common, *sweep, "--sweep-epochs", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_sweep_then_seeds(json.loads(out.read_text()), r.stdout)
    md = (tmp_path / "docs" / "accuracy.md").read_text()
    assert md in r.stdout and "sha-admin − mha-admin:" in md and "95% interval" in md and "at " in md
    assert (tmp_path / "docs" / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Same command again: every run is in the records, nothing retrains; then more variants append.
    again = _run(*common, *sweep, "--sweep-epochs", "2", "--dry-run")
    assert again.returncode == 0 and "nothing to train" in again.stdout
    more = _run(*common, "--variants", "sha-pre,sha-post", "--seeds", "1", "--epochs", "2", "--lrs", "1e-3")
    assert more.returncode == 0, more.stderr[-3000:]
    records = json.loads(out.read_text())
    assert [rec["variant"] for rec in records[6:]] == ["sha-pre", "sha-post"]
    md = _run("--out", str(out), "--summary-only").stdout
    assert "sha-post − mha-admin:" in md and "(no interval: needs ≥ 2 seeds of each)" in md


def test_the_recorded_runs_keep_their_keys() -> None:
    """Every fixed-budget run in docs/accuracy.json (written by earlier versions of the ablation,
    patience absent or null) has the key this version computes for the same command, so
    rerunning that command never retrains it; the early-stopped run keeps a key of its own."""
    from contract.accuracy import early_stopped, load_records, run_key
    from models.ablation import parse_args, terms

    records = load_records(ROOT / "docs" / "accuracy.json")
    fixed = [r for r in records if not early_stopped(r)]
    assert len(fixed) >= 20
    for r in fixed:
        a = parse_args(["--epochs", str(r["epochs"]), "--threads", "2"])
        key = run_key(
            {
                "variant": r["variant"],
                "lr": r["lr"],
                "seed": r["seed"],
                **terms(a, r["epochs"], r["data_sha256"]),
            }
        )
        assert key == run_key(r), r
    (stopped,) = [r for r in records if early_stopped(r)]
    assert run_key(stopped) not in {run_key(r) for r in fixed}


def test_seeds_go_round_the_variants(tmp_path: Path, wordnet_dir: Path) -> None:
    """Every variant's first seed before any second one: a run stopped part-way stays balanced."""
    r = _run(
        *("--preset", "tiny", "--wordnet-dir", str(wordnet_dir), "--out", str(tmp_path / "a.json")),
        *("--runs", str(tmp_path / "runs"), "--variants", "mha-admin,sha-admin", "--seeds", "2", "--dry-run"),
    )
    assert [line.split(" -> ")[0] for line in r.stdout.splitlines()] == [
        f"seed: {v} lr 0.001 seed {seed} epochs 4" for seed in (1, 2) for v in ("mha-admin", "sha-admin")
    ]
    assert not (tmp_path / "a.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variants", "mha-pre"], "models.ablation: --variants: unknown mha-pre; choose from"),
        (["--variants", ","], "models.ablation: --variants: unknown (empty)"),
        (["--preset", "huge"], "models.ablation: argument --preset: invalid choice: 'huge'"),
        (["--epochs", "x"], "models.ablation: argument --epochs: invalid int value"),
        (["--lrs", "1e-3,fast"], "models.ablation: --lrs: not a comma list of numbers"),
        (["--lrs", "2"], "models.ablation: --lrs: every rate must be in (0, 1)"),
        (["--seeds", "0"], "models.ablation: --seeds: must be at least 1"),
        (["--until-converged"], "unrecognized arguments: --until-converged"),
        (["--attn-init", "orthogonal"], "error: attn_init: Input should be 'combined' or 'per_head'"),
    ],
)
def test_bad_flags_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    r = _run("--out", str(tmp_path / "accuracy.json"), "--runs", str(tmp_path / "runs"), *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_out_must_be_a_json_file_and_a_corrupt_one_is_reported(tmp_path: Path, wordnet_dir: Path) -> None:
    r = _run("--out", str(tmp_path))
    assert r.returncode == 2 and "--out: the records file must end in .json" in r.stderr
    bad = tmp_path / "accuracy.json"
    bad.write_text("{}")
    r = _run("--out", str(bad), "--wordnet-dir", str(wordnet_dir), "--preset", "tiny")
    assert r.returncode == 2 and r.stderr.strip().endswith("must hold a JSON list of run records")
