"""`make gpu-report` (scripts/gpu_report.py): one line and exit 2 without a GPU, the whole
pipeline rehearsed on the CPU, and the summary it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from loadtest.report import gpu_summary
from tests.conftest import inproc_pair_rows

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_report.py"


def gpu_report_module() -> ModuleType:
    """scripts/gpu_report.py as a module (scripts/ is no package), for tests that call into it."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_report

        return gpu_report
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def _has_gpu() -> bool:
    return gpu_report_module().gpu_facts() is not None


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_without_a_gpu_it_exits_2_with_one_line(tmp_path: Path):
    if _has_gpu():
        pytest.skip("this host has an NVIDIA GPU: the no-GPU exit cannot be observed here")
    bench = tmp_path / "benchmarks.md"
    bench.write_text("# Benchmarks\n")
    r = _run(
        "--out-root", str(tmp_path / "gpu"), "--benchmarks", str(bench), "--repo", str(tmp_path / "repo")
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: no NVIDIA GPU") and r.stdout == ""
    assert not (tmp_path / "gpu").exists() and bench.read_text() == "# Benchmarks\n"  # nothing written


def test_bad_flags_exit_2_with_one_line():
    r = _run("--budget-s", "-3")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "budget" in r.stderr


def test_make_target_runs_the_script():
    # --no-print-directory: under `make test` (MAKELEVEL set) make would add Entering/Leaving lines
    cmd = ["make", "-n", "--no-print-directory", "gpu-report"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "scripts/gpu_report.py" in r.stdout.splitlines()[-1], r.stdout


def _points(ratio: dict[tuple[int, int], float]) -> list[dict]:
    """In-process rows for the BERT-base pair with the given SHA/MHA p50 ratio per (batch, seq)."""
    pair = (("mha-base-random", "mha", 12, 12), ("sha-base-random", "sha", 144, 1))
    return inproc_pair_rows(ratio, lambda b, q: 1.0 + b * q / 100, pair)


def test_summary_names_the_crossover_and_appends_to_benchmarks(tmp_path: Path):
    from loadtest.results import write

    assert gpu_summary.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    write(tmp_path / "inproc-fp16", {}, _points({(1, 32): 1.3, (16, 512): 0.8, (64, 512): 0.7}))
    write(tmp_path / "inproc-fp32", {}, _points({(1, 32): 1.4, (64, 512): 1.1}))
    s = gpu_summary.collect(tmp_path, {"inproc-fp32": "model.onnx", "inproc-fp16": "model.fp16.onnx"})
    assert s["inproc"]["inproc-fp16"]["crossover"]["sha_cheaper_at"] == [[16, 512], [64, 512]]
    fp16 = gpu_summary.crossover_sentence("fp16", s["inproc"]["inproc-fp16"]["crossover"])
    assert fp16 == (
        "fp16: the crossover appears — SHA is cheaper at 2 of 3 shapes (seq 512 from batch 16), "
        "down to 0.70x MHA at batch 64 x seq 512."
    )
    fp32 = gpu_summary.crossover_sentence("fp32", s["inproc"]["inproc-fp32"]["crossover"])
    assert fp32.startswith("fp32: no crossover — MHA is cheaper at all 2 shapes; SHA's best is 1.10x MHA")
    facts = {
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "driver": "580.1"},
        "created": "2026-01-02T03:04:05+00:00",
        "machine": {"cpu": "x", "cores": 16},
        "steps": [{"name": "export", "status": "ok", "seconds": 90.0}],
    }
    md = gpu_summary.report_md(facts, s, tmp_path)
    assert "| export | ok | 90 |" in md and "| seq 512 | – | **0.80** | **0.70** |" in md
    block = gpu_summary.benchmarks_block(facts, s, "gpu/nvidia-h100-80gb-hbm3")
    assert block.startswith("\n## GPU report: NVIDIA H100 80GB HBM3 (2026-01-02, `make gpu-report`)")
    assert "[gpu/nvidia-h100-80gb-hbm3/report.md](gpu/nvidia-h100-80gb-hbm3/report.md)" in block
    assert "- in-process, model.fp16.onnx: the crossover appears — SHA is cheaper at 2 of 3 shapes" in block


def _rehearse(tmp_path: Path, *extra: str, timeout: float) -> subprocess.CompletedProcess:
    """The CPU rehearsal with its repository, outputs and logs all under `tmp_path`."""
    where = (
        "--repo",
        str(tmp_path / "repo"),
        "--out-root",
        str(tmp_path / "gpu"),
        "--logs",
        str(tmp_path / "logs"),
    )
    return _run("--rehearse-cpu", *where, *extra, timeout=timeout)


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_step_and_writes_the_report(tmp_path: Path):
    bench = tmp_path / "benchmarks.md"
    bench.write_text("# Benchmarks\n\nearlier text\n")
    r = _rehearse(tmp_path, "--benchmarks", str(bench), timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "gpu" / "cpu-rehearsal"
    data = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in data["steps"]] == [
        "export",
        "inproc-fp32",
        "inproc-fp16",
        "inproc-opt",
        "service-start",
        "http-sweep",
        "capacity",
    ]
    assert all(s["status"] == "ok" for s in data["steps"]), data["steps"]
    assert data["gpu"]["name"] == "CPU rehearsal" and "CPUExecutionProvider" in data["providers"]
    assert set(data["inproc"]) == {"inproc-fp32", "inproc-fp16", "inproc-opt"}
    assert {r["model"] for r in data["http"]["capacity"]} == {"mha-tiny-random", "sha-tiny-random"}
    for sub in ("inproc-fp32", "inproc-fp16", "inproc-opt", "http"):
        assert (out / sub / "results.json").is_file() and (out / sub / "report.md").is_file()
    assert (out / "http" / "capacity.json").is_file()
    md = (out / "report.md").read_text()
    assert "## The paper's crossover on this GPU" in md and "in-process, model.fp16.onnx" in md
    text = bench.read_text()
    assert text.startswith("# Benchmarks\n\nearlier text\n") and "## GPU report: CPU rehearsal" in text
    # a second run reuses the exports
    r = _rehearse(tmp_path, "--budget-s", "5", timeout=200)
    steps = json.loads((out / "results.json").read_text())["steps"]
    assert steps[0] == {"name": "export", "status": "reused", "seconds": 0.0, "repo": str(tmp_path / "repo")}


def test_cuda_plan_adds_the_fp16_sweep_replayed_as_cuda_graphs(tmp_path: Path) -> None:
    """On CUDA the in-process sweeps include fp16 with H2H_CUDA_GRAPH on (the others off); the CPU
    rehearsal has no graphs to replay and skips it."""
    gr = gpu_report_module()
    calls: list[tuple[str, list[str], dict[str, str]]] = []

    class Recorder:
        def step(self, name: str, cmd: list[str], *, env: dict[str, str] | None = None) -> bool:
            calls.append((name, cmd, env or {}))
            return True

    gr.inproc_sweeps(Recorder(), tmp_path / "repo", tmp_path / "out", gr.Plan())
    graphs = {name: env["H2H_CUDA_GRAPH"] for name, _, env in calls}
    assert graphs == {
        "inproc-fp32": "false",
        "inproc-fp16": "false",
        "inproc-fp16-graphs": "true",
        "inproc-opt": "false",
    }
    cmd = dict((name, c) for name, c, _ in calls)["inproc-fp16-graphs"]
    assert cmd[cmd.index("--variant") + 1] == "model.fp16.onnx"
    assert gr.VARIANTS["inproc-fp16-graphs"] == "model.fp16.onnx + CUDA graphs"
    calls.clear()
    gr.inproc_sweeps(Recorder(), tmp_path / "repo", tmp_path / "out", gr.REHEARSAL)
    assert [name for name, _, _ in calls] == ["inproc-fp32", "inproc-fp16", "inproc-opt"]
