"""Load tester end to end: a tiny sweep against a live service on loopback, and CLI failures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import processes
from tests.conftest import ROOT


def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loadtest", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def live_service(tiny_repo: Path):
    env = {"H2H_LOG_LEVEL": "warning", "H2H_INTRA_OP_THREADS": "1"}
    with processes.serving(
        processes.service_args(tiny_repo), ready_path="/v2/health/ready", env=env, timeout=60
    ) as server:
        yield server.base


def _assert_sound_point(p: dict) -> None:
    """One measured point: no errors, ordered percentiles, and server timings within the client's."""
    assert p["errors"] == 0 and p["requests"] > 0, p
    assert 0 < p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"]
    assert p["tokens_per_s"] == pytest.approx(p["rps"] * p["batch"] * p["seq"])
    if p["mode"] == "http":
        assert p["server_compute_ms"] > 0 and p["server_batches"] > 0
        # the server's own split can never exceed what the client saw end to end
        assert p["server_queue_ms"] + p["server_compute_ms"] <= p["max_ms"] + 0.5, p
    if p["load"] == "open":
        assert p["achieved_rate"] > 0 and p["late_sends"] <= p["requests"] + p["errors"], p


@pytest.mark.slow
def test_tiny_sweep_against_live_service(live_service: str, tiny_repo: Path, tmp_path: Path):
    out = tmp_path / "results"
    grid = ("--mode", "both", "--batch", "1,4", "--seq", "16,128", "--concurrency", "1,4", "--rate", "40")
    timing = ("--duration", "0.6", "--warmup", "0.2", "--inproc-budget", "0.2")
    where = ("--repo", str(tiny_repo), "--url", live_service, "--out", str(out))
    r = _run("sweep", "--models", "mha,sha", *where, *grid, *timing)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "clamped to its max_sequence_length 64" in r.stderr  # seq 128 > the tiny models' 64
    rows = list(csv.DictReader((out / "results.csv").open()))
    data = json.loads((out / "results.json").read_text())
    assert len(rows) == len(data["points"]) == 2 * 2 * 2 + 3 * 2 * 2 * 2  # inproc + (c=1, c=4, 40/s) http
    assert {r["model"] for r in rows} == {"mha-tiny", "sha-tiny"}
    assert {(r["mode"], r["load"]) for r in rows} == {
        ("inproc", "inproc"),
        ("http", "closed"),
        ("http", "open"),
    }
    assert {int(r["seq"]) for r in rows} == {16, 64}
    for p in data["points"]:
        _assert_sound_point(p)
    meta = data["meta"]
    assert meta["machine"]["cores"] >= 1 and "onnxruntime-gpu" in meta["versions"]
    assert set(meta["manifests"]) == {"mha-tiny", "sha-tiny"}
    assert meta["providers"]["inproc"]["mha-tiny"] == "CPUExecutionProvider" or meta["machine"]["gpus"]
    md = (out / "report.md").read_text()
    assert "## Verdict" in md and "Serving over HTTP adds" in md
    for png in ("latency_vs_batch.png", "ratio_heatmap.png", "throughput_vs_concurrency.png", "overhead.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # the report command re-renders from the folder alone
    r2 = _run("report", str(out))
    assert r2.returncode == 0, r2.stderr
    assert "sha-tiny" in r2.stdout


def _assert_one_line_exit_2(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and needle in r.stderr and r.stderr.startswith("error:"), r.stderr


@pytest.mark.parametrize(("command", "args"), [("sweep", ["--mode", "http"]), ("capacity", [])])
def test_service_unreachable_is_one_line_exit_2(command: str, args: list[str], tmp_path: Path):
    url = f"http://127.0.0.1:{processes.free_port()}"
    _assert_one_line_exit_2(_run(command, *args, "--url", url, "--out", str(tmp_path), timeout=60), url)


@pytest.mark.parametrize(
    ("command", "args", "needle"),
    [
        ("sweep", ["--batch", "1,3,...,8"], "does not land on 8"),
        ("sweep", ["--mode", "warp"], "invalid choice"),
        ("sweep", ["--duration", "-1"], "duration"),
        ("sweep", ["--models", "gpt"], "no model 'gpt'"),
        ("capacity", ["--slo-p99-ms", "-1"], "slo_p99_ms"),
        ("capacity", ["--batch", "0"], "must be positive"),
        ("capacity", ["--max-error-rate", "2"], "max_error_rate"),
        ("capacity", ["--models", "gpt"], "no model 'gpt'"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    command: str, args: list[str], needle: str, request: pytest.FixtureRequest, tmp_path: Path
):
    """Sweep flags against the tiny repository in-process, capacity flags against the live service."""
    if command == "sweep":
        where = ["--mode", "inproc", "--repo", str(request.getfixturevalue("tiny_repo"))]
    else:
        where = ["--url", request.getfixturevalue("live_service")]
    _assert_one_line_exit_2(_run(command, *where, "--out", str(tmp_path), *args, timeout=60), needle)


def test_alias_ambiguity(tiny_repo: Path, tmp_path: Path):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)
    shutil.copytree(repo / "mha-tiny", repo / "mha-other")
    r = _run("sweep", "--mode", "inproc", "--repo", str(repo), "--dry-run", timeout=60)
    assert r.returncode == 2 and "ambiguous" in r.stderr and "mha-other" in r.stderr
    r = _run(
        "sweep",
        "--mode",
        "inproc",
        "--repo",
        str(repo),
        "--models",
        "mha-other,sha",
        "--batch",
        "1",
        "--seq",
        "8",
        "--dry-run",
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["inproc mha-other b=1 s=8", "inproc sha-tiny b=1 s=8"]


@pytest.mark.slow
def test_capacity_search_against_live_service(live_service: str, tiny_repo: Path, tmp_path: Path):
    """Two interleaved rounds of both models and of the null-engine service (the ceiling)."""
    out = tmp_path / "results"
    env = {"H2H_LOG_LEVEL": "warning", "H2H_INTRA_OP_THREADS": "1"}
    null = processes.service_args(tiny_repo, "--null-engine")
    with processes.serving(null, ready_path="/v2/health/ready", env=env, timeout=60) as ceiling:
        r = _run(
            *("capacity", "--models", "mha,sha", "--seq", "16", "--slo-p99-ms", "500"),
            *("--probe-duration", "0.3", "--max-probes", "3", "--windows", "2", "--p50-window", "0.2"),
            *("--min-rounds", "2", "--max-rounds", "2", "--url", live_service, "--ceiling-url", ceiling.base),
            *("--out", str(out)),
        )
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((out / "capacity.json").read_text())
    rows = list(csv.DictReader((out / "capacity.csv").open()))
    assert [(x["model"], int(x["batch"]), int(x["seq"])) for x in rows] == [
        ("mha-tiny", 1, 16),
        ("sha-tiny", 1, 16),
    ]
    for row in data["rows"]:
        assert row["capacity_rps"] > 0 and row["capacity_rows_per_s"] == row["capacity_rps"]
        assert row["p99_ms"] <= 500 and row["p50_c1_ms"] > 0 and row["rounds"] == 2
        assert row["capacity_lo_rps"] <= row["capacity_rps"] <= row["capacity_hi_rps"]
        assert row["p50_c1_lo_ms"] <= row["p50_c1_ms"] <= row["p50_c1_hi_ms"]
        assert row["accuracy"] == data["meta"]["manifests"][row["model"]]["test_accuracy"]
        assert row["ceiling_rps"] > 0 and row["ceiling_share"] == pytest.approx(
            row["capacity_rps"] / row["ceiling_rps"]
        )
    (ceil,) = data["ceiling"]
    assert (
        ceil["model"] == "service ceiling (null engine)" and ceil["rounds"] == 2 and ceil["capacity_rps"] > 0
    )
    assert [x["model"] for x in data["rounds"]].count("mha-tiny") == 2 and len(data["rounds"]) == 6
    assert sum(p["windows"] for p in data["probes"]) == sum(x["probes"] for x in [*data["rows"], ceil])
    ratio = data["ratios"][0]
    assert ratio["rounds"] == 2 and ratio["sha_over_mha_lo"] <= ratio["sha_over_mha"]
    assert ratio["p50_sha_over_mha_lo"] <= ratio["p50_sha_over_mha"] <= ratio["p50_sha_over_mha_hi"]
    assert "SHA/MHA capacity at b=1 s=16" in r.stdout and "req/s" in r.stderr  # summary, per-probe progress
    md = (out / "report.md").read_text()
    assert "## Which model to serve" in md and ("decided by" in md or "Either: no difference" in md)
    assert "| service ceiling (null engine) | no model |" in md
    assert all(0 <= row["accuracy"] <= 1 for row in data["rows"])  # the fixture runs record test accuracy
    assert (out / "accuracy_vs_capacity.png").read_bytes()[:4] == b"\x89PNG"
    assert "![Accuracy vs capacity](accuracy_vs_capacity.png)" in md
