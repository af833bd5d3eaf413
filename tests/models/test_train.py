"""Training end to end on the fixture: loss falls, the run folder is complete and loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from models.checkpoint import RunDirError, load_run
from tests.conftest import tiny_train_settings


def test_tiny_training_loss_falls_and_run_dir_is_complete(tiny_runs: dict[str, Path]) -> None:
    for arch, run in tiny_runs.items():
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["complete"] and metrics["steps"] == 30
        assert metrics["final_loss"] < metrics["first_loss"], (arch, metrics["loss_curve"])
        assert 0.0 <= metrics["test_accuracy"] <= 1.0
        assert metrics["params"] > 0 and metrics["flops_per_token"] > 0 and metrics["train_time_s"] > 0
        loaded = load_run(run)
        assert loaded.config.arch == arch and len(loaded.labels) == 45
        ids = torch.tensor([loaded.tokenizer.encode("a domestic animal kept as a pet")])
        logits, emb = loaded.model(ids, torch.ones_like(ids))
        assert logits.shape == (1, 45) and torch.isfinite(emb).all()
    assert json.loads((tiny_runs["sha"] / "metrics.json").read_text())["admin_omegas"][0] == 1.0
    # No temporary folders left beside the runs.
    assert not [p for p in tiny_runs["mha"].parent.iterdir() if p.name.startswith(".")]


def test_training_is_deterministic(tmp_path: Path, wordnet_dir: Path) -> None:
    from models.settings import TrainSettings
    from models.train import train

    kw = dict(
        arch="mha", preset="tiny", max_steps=5, batch_size=8, wordnet_dir=wordnet_dir, min_freq=1, seed=7
    )
    a = train(TrainSettings(out=tmp_path / "a", **kw))
    b = train(TrainSettings(out=tmp_path / "b", **kw))
    assert a["loss_curve"] == b["loss_curve"]


def test_load_run_names_the_problem(tmp_path: Path, tiny_runs: dict[str, Path]) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_runs["mha"], broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    try:
        load_run(broken)
    except RunDirError as exc:
        assert "model.safetensors" in str(exc)
    else:
        raise AssertionError("corrupt weights were accepted")
    (broken / "config.json").unlink()
    try:
        load_run(broken)
    except RunDirError as exc:
        assert "config.json" in str(exc)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "models.train", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    for args, needle in [
        (["--arch", "gqa"], "arch"),
        (["--epochs", "zero"], "epochs"),
        (["--wordnet-dir", str(tmp_path)], "apt-get install wordnet-base"),
        (["--bogus"], "unrecognized"),
    ]:
        r = _cli(*args, "--out", str(tmp_path / "runs"))
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, r.stderr)


def test_max_len_other_than_64_truncates_training_rows_like_the_saved_tokenizer(
    tmp_path: Path, wordnet_dir: Path
) -> None:
    """Splits are encoded after the tokenizer takes the config's max length (issue 11)."""
    from contract.tokenizer import Tokenizer
    from models.data import load_wordnet, split
    from models.train import prepare, train

    s = tiny_train_settings(tmp_path, arch="sha", max_len=8, max_steps=3, wordnet_dir=wordnet_dir)
    data = prepare(s)
    assert data.cfg.max_len == 8 and data.tok.max_length == 8
    lengths = [len(r) for r in data.train.ids + data.validation.ids + data.test.ids]
    assert max(lengths) == 8 and lengths.count(8) > len(lengths) // 4  # many glosses are longer
    metrics = train(s)
    assert metrics["max_len"] == 8 and metrics["steps"] == 3
    saved = Tokenizer.load(tmp_path / s.run_name() / "tokenizer.json")
    assert saved.max_length == 8
    splits = split(load_wordnet(wordnet_dir), seed=s.split_seed)
    assert [saved.encode(e.text) for e in splits.train] == data.train.ids
    assert [saved.encode(e.text) for e in splits.test] == data.test.ids
    assert load_run(tmp_path / s.run_name()).config.max_len == 8


def test_seeds_share_one_split_and_the_data_fingerprint_says_so(wordnet_dir: Path) -> None:
    from models.settings import TrainSettings
    from models.train import prepare

    kw = dict(arch="mha", preset="tiny", wordnet_dir=wordnet_dir, min_freq=1)
    a, b = prepare(TrainSettings(seed=1, **kw)), prepare(TrainSettings(seed=2, **kw))
    assert a.train.ids == b.train.ids and a.data_sha256 == b.data_sha256
    c = prepare(TrainSettings(seed=1, split_seed=99, **kw))
    assert c.data_sha256 != a.data_sha256


def test_run_without_attn_init_in_its_config_loads_as_per_head(
    tmp_path: Path, tiny_runs: dict[str, Path]
) -> None:
    """Checkpoints written before the field existed stay loadable, with the init they had."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_runs["sha"], old)
    raw = json.loads((old / "config.json").read_text())
    assert raw["model"].pop("attn_init") == "combined"
    (old / "config.json").write_text(json.dumps(raw))
    before, after = load_run(tiny_runs["sha"]), load_run(old)
    assert after.config.attn_init == "per_head"
    ids = torch.tensor([before.tokenizer.encode("a domestic animal kept as a pet")])
    torch.testing.assert_close(
        after.model(ids, torch.ones_like(ids))[0], before.model(ids, torch.ones_like(ids))[0]
    )


def test_every_epoch_runs_and_the_best_epoch_is_tested(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A scripted validation curve (fake evaluator) that peaks at epoch 2 of 4: all 4 epochs still
    train (the schedule decays to the end; there is no early stopping), and the test runs on
    epoch 2's weights."""
    from models import train as train_mod

    curve = iter([0.50, 0.60, 0.55, 0.58])
    seen: list[float] = []  # a fingerprint of the weights each evaluation saw

    def fake_accuracy(model, data, device, batch_size=256):  # noqa: ANN001, ANN202
        seen.append(float(sum(p.detach().double().sum() for p in model.parameters())))
        return next(curve, 0.42)  # the fifth call is the test set's

    monkeypatch.setattr(train_mod, "accuracy", fake_accuracy)
    m = train_mod.train(tiny_train_settings(tmp_path, arch="mha", epochs=4, batch_size=64, threads=1))
    assert m["val_curve"] == [0.50, 0.60, 0.55, 0.58] and m["epochs_run"] == m["epochs"] == 4
    assert m["best_epoch"] == 2 and m["validation_accuracy"] == 0.60 and m["test_accuracy"] == 0.42
    assert "patience" not in m and "stopped_early" not in m
    assert len(seen) == 5 and seen[4] == seen[1] != seen[3]  # best weights restored for the test
    wall, train_s = m["epoch_wall_s"], m["epoch_train_s"]
    assert len(wall) == len(train_s) == 4 and all(w >= t > 0 for w, t in zip(wall, train_s, strict=True))
    assert wall == sorted(wall)
    on_disk = json.loads((tmp_path / "mha-tiny-admin" / "metrics.json").read_text())
    assert on_disk["complete"] and on_disk["best_epoch"] == 2
