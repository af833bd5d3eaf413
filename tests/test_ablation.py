"""scripts/ablation.py: one table from real (fixture) training runs; bad flags are one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ABLATION = ROOT / "scripts" / "ablation.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ABLATION), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_tiny_ablation_prints_one_row_per_variant(tmp_path: Path, wordnet_dir: Path) -> None:
    r = _run("--preset", "tiny", "--epochs", "1", "--wordnet-dir", str(wordnet_dir), "--out", str(tmp_path),
             "--variants", "sha-pre,sha-post")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    table = r.stdout[r.stdout.index("| model |") :].splitlines()
    assert table[2].startswith("| SHA | pre | 8L-1H |") and table[3].startswith("| SHA | post | 8L-1H |")
    rows = json.loads((tmp_path / "ablation-tiny-e1-sha-pre_sha-post.json").read_text())
    assert [(row["arch"], row["norm"]) for row in rows] == [("sha", "pre"), ("sha", "post")]
    assert all(0.0 <= row["test_accuracy"] <= 1.0 for row in rows)
    assert (tmp_path / "sha-tiny-post-e1" / "metrics.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variants", "mha-pre"], "ablation.py: --variants: unknown mha-pre; choose from"),
        (["--variants", ","], "ablation.py: --variants: unknown (empty)"),
        (["--preset", "huge"], "error: preset: Input should be 'tiny', 'small' or 'base'"),
        (["--epochs", "x"], "ablation.py: argument --epochs: invalid int value"),
    ],
)
def test_bad_flags_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    r = _run("--out", str(tmp_path), *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written
