"""`make demo` end to end on the fixture: train, export, serve, compare, load-test, table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _demo(tmp_path: Path, wordnet_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        "-m",
        "demo",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--wordnet-dir",
        str(wordnet_dir),
        "--runs",
        str(tmp_path / "runs"),
        "--repo",
        str(tmp_path / "repo"),
        "--results",
        str(tmp_path / "results"),
        *extra,
    ]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_demo_end_to_end_then_reuses_runs(tmp_path: Path, wordnet_dir: Path) -> None:
    # another MHA model already in the repository must not confuse serving or the sweep
    subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            "--random-init",
            "--preset",
            "tiny",
            "--arch",
            "mha",
            "--repo",
            str(tmp_path / "repo"),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    first = _demo(tmp_path, wordnet_dir, "--loadtest-preset", "tiny", "--capacity-seq", "8")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    # trained both, exported both with a parity figure, served, compared, load-tested
    for arch in ("mha", "sha"):
        assert (tmp_path / "runs" / f"{arch}-tiny-admin" / "metrics.json").is_file()
        assert json.loads((tmp_path / "repo" / f"{arch}-tiny" / "manifest.json").read_text())["arch"] == arch
    assert "parity max |Δlogits|" in out
    compare = json.loads(out[out.index("{", out.index("POST /v1/compare") + 20) : out.index("=== 4/4")])
    assert set(compare["results"]) == {"mha-tiny", "sha-tiny"}
    assert "service stopped on SIGTERM, exit code 0" in out
    table = out[out.index("=== MHA vs SHA ===") :]
    assert "| MHA (admin) | 2L-4H |" in table and "| SHA (admin) | 8L-1H |" in table
    assert "in-process p50 ms" in table and "HTTP p50 ms" in table
    results = tmp_path / "results"
    assert (results / "report.md").is_file() and (results / "results.csv").is_file()
    assert list(results.glob("*.png")), "no plots written"
    assert f"plots in {results}/" in out
    _assert_the_answer(out, results)

    # second run: completed runs are reused, not retrained
    second = _demo(tmp_path, wordnet_dir, "--skip-loadtest")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("reusing") == 2


def _assert_the_answer(out: str, results: Path) -> None:
    """The demo ends with the which-model table and one sentence; the report holds the plot."""
    answer = out[out.index("=== Which model to serve (p99 <= 50 ms) ===") :].strip().splitlines()
    assert answer[1].startswith(
        "| model | layers x heads | test acc, this model | test acc, seeded study | p50 ms, batch 1 | req/s b1 s8 |"
    )
    assert answer[3].startswith("| mha-tiny | MHA 2L-4H | 0.") and answer[4].startswith(
        "| sha-tiny | SHA 8L-1H | 0."
    )
    assert answer[3].split(" | ")[3].endswith("seeds)")  # the study's figure, labelled (committed records)
    assert answer[5].startswith("| service ceiling (null engine) | no model |") and "rounds" in answer[5]
    assert answer[6].startswith("| SHA vs MHA | – | SHA − MHA ") and " points [" in answer[6]
    sentence = answer[-1]
    assert len(answer) == 9 and answer[7] == "" and sentence == out.strip().splitlines()[-1]
    assert sentence.startswith(("Serve mha-tiny", "Serve sha-tiny", "Trade-off: ", "Either: no difference"))
    assert (
        "over 60 test examples" in sentence
        and "In the seeded study (docs/accuracy.json" in sentence
        and "within p99 <= 50 ms at batch 1 x seq 8" in sentence
    )
    report = (results / "report.md").read_text()
    assert "## Which model to serve" in report and sentence in report
    assert "![Accuracy vs capacity](accuracy_vs_capacity.png)" in report
    assert (results / "accuracy_vs_capacity.png").read_bytes()[:4] == b"\x89PNG"
    assert (results / "capacity.json").is_file()


def test_demo_bad_flag_is_one_line_exit_2(tmp_path: Path, wordnet_dir: Path) -> None:
    r = _demo(tmp_path, wordnet_dir, "--epochs", "0")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: epochs: Input should be greater than or equal to 1"]
    assert not (tmp_path / "runs").exists()
