"""`make gpu-report` (`python -m loadtest gpu-report`): one line and exit 2 without a GPU, the whole
round rehearsed on the CPU, the summary it writes, and its exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.gpu import page, plan, preflight, steps, summary
from loadtest.gpu import round as gpu_round
from tests.conftest import ROOT
from tests.loadtest.conftest import inproc_pair_rows


def _has_gpu() -> bool:
    return preflight.gpu_facts() is not None


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "loadtest", "gpu-report", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


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


def test_make_target_runs_the_module():
    # --no-print-directory: under `make test` (MAKELEVEL set) make would add Entering/Leaving lines
    cmd = ["make", "-n", "--no-print-directory", "gpu-report"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].endswith("-m loadtest gpu-report"), r.stdout


def _points(ratio: dict[tuple[int, int], float]) -> list[dict]:
    """In-process rows for the BERT-base pair with the given SHA/MHA p50 ratio per (batch, seq)."""
    pair = (("mha-base-random", "mha", 12, 12), ("sha-base-random", "sha", 144, 1))
    return inproc_pair_rows(ratio, lambda b, q: 1.0 + b * q / 100, pair)


def test_summary_names_the_crossover_and_appends_to_benchmarks(tmp_path: Path):
    from contract.results import write

    assert summary.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    write(tmp_path / "inproc-fp16", {}, _points({(1, 32): 1.3, (16, 512): 0.8, (64, 512): 0.7}))
    write(tmp_path / "inproc-fp32", {}, _points({(1, 32): 1.4, (64, 512): 1.1}))
    s = summary.collect(tmp_path, {"inproc-fp32": "model.onnx", "inproc-fp16": "model.fp16.onnx"})
    assert s.inproc["inproc-fp16"].crossover.sha_cheaper_at == [(16, 512), (64, 512)]
    fp16 = summary.crossover_sentence("fp16", s.inproc["inproc-fp16"].crossover)
    assert fp16 == (
        "fp16: the crossover appears — SHA is cheaper at 2 of 3 shapes (seq 512 from batch 16), "
        "down to 0.70x MHA at batch 64 x seq 512."
    )
    fp32 = summary.crossover_sentence("fp32", s.inproc["inproc-fp32"].crossover)
    assert fp32.startswith("fp32: no crossover — MHA is cheaper at all 2 shapes; SHA's best is 1.10x MHA")
    facts = {
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "driver": "580.1"},
        "created": "2026-01-02T03:04:05+00:00",
        "machine": {"cpu": "x", "cores": 16},
        "steps": [{"name": "export", "status": "ok", "seconds": 90.0}],
    }
    md = page.report_md(facts, s, "crossover.png")
    assert "| export | ok | 90 |" in md and "| seq 512 | – | **0.80** | **0.70** |" in md
    assert "![SHA/MHA vs tokens per batch](crossover.png)" in md
    assert "- model.fp16.onnx: SHA/MHA 1.30 at 32 tokens per batch (batch 1 x seq 32) to 0.70 at 32,768" in md
    block = page.benchmarks_block(facts, s, "gpu/nvidia-h100-80gb-hbm3")
    assert block.startswith("\n## GPU report: NVIDIA H100 80GB HBM3 (2026-01-02, `make gpu-report`)")
    assert "[gpu/nvidia-h100-80gb-hbm3/report.md](gpu/nvidia-h100-80gb-hbm3/report.md)" in block
    assert "SHA is cheaper from 8,192 tokens per batch (batch 16 x seq 512)" in block
    json.dumps(s.as_json())  # results.json takes the summary as it is


def test_throughput_is_read_against_the_measured_peak(tmp_path: Path):
    """Model TFLOP/s from p50 and the manifest's shape, as a share of the peak of its precision."""
    from contract.results import write

    shape = {"layers": 12, "d_model": 768, "heads": 12, "head_dim": 64, "ffn_dim": 3072}
    meta = {
        "manifests": {
            "mha-base-random": shape,
            "sha-base-random": {**shape, "layers": 144, "heads": 1, "ffn_dim": 256},
        }
    }
    write(tmp_path / "inproc-gpu", meta, _points({(64, 128): 2.0}))
    (tmp_path / "peak").mkdir()
    (tmp_path / "peak" / "peak.json").write_text(
        '{"complete": true, "tflops": {"fp16": 700.0, "fp32": 50.0}}'
    )
    s = summary.collect(tmp_path, {"inproc-gpu": "model.gpu.onnx"})
    (mha, _), goal = s.rates(), s.goal_rates()
    p50 = 1.0 + 64 * 128 / 100  # _points' MHA p50 at this shape
    assert mha.tokens_per_s == pytest.approx(64 * 128 / (p50 / 1e3))
    assert mha.tflops == pytest.approx(
        mha.tokens_per_s * 174.587904e6 / 1e12
    )  # 174.6 MFLOP per token at seq 128
    assert mha.precision == "fp16" and mha.share == pytest.approx(mha.tflops / 700)
    md = page.report_md({"gpu": {"name": "G"}, "steps": []}, s)
    assert f"- goal shape: {goal[0].sentence()}; misses the goal of 2.5M tokens/s." in md
    assert "Matmul peak (TFLOP/s): fp16 700, fp32 50." in md


def test_exit_code_counts_only_steps_that_could_run_and_failed():
    ok = [{"status": "ok"}, {"status": "reused"}, {"status": "skipped: no model.opt.onnx"}]
    assert steps.exit_code(ok + [{"status": "skipped: no CUDA (the profile step profiles the CPU)"}]) == 0
    assert steps.exit_code(ok + [{"status": "skipped: out of time"}]) == steps.EXIT_UNFINISHED == 4
    assert (
        steps.exit_code(ok + [{"status": "failed: out of time"}]) == 4
    )  # cut by the budget: a rerun does it
    assert steps.exit_code(ok + [{"status": "skipped: out of time"}, {"status": "failed: exit 1"}]) == 1
    assert steps.exit_code(ok + [{"status": "failed earlier (reused)"}]) == 1


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


STEPS = [
    ("export", "ok"),
    ("peak", "ok"),
    ("inproc-served", "skipped: CUDA graphs need CUDA"),
    ("kernels", "skipped: no CUDA (the profile step profiles the CPU)"),
    ("cross-fp32", "ok"),
    ("cross-gpu", "ok"),
    ("torch", "ok"),
    ("small-served", "ok"),
    ("train-cost", "ok"),
    ("train-eager-report", "ok"),
    ("inproc-gpu", "ok"),
    ("inproc-fp32", "ok"),
    ("inproc-fp16-graphs", "skipped: CUDA graphs need CUDA"),
    ("inproc-fp16", "skipped: no model.fp16.onnx"),
    ("inproc-opt", "ok"),
    ("profile", "ok"),
    ("http-start", "ok"),
    ("http-sweep", "ok"),
    ("http-capacity", "ok"),
]
RAN = {
    "inproc-gpu",
    "inproc-fp32",
    "inproc-opt",
    "cross-fp32",
    "cross-gpu",
    "small-served",
    "torch-eager-fp32",
    "train-cost/train-eager",
}


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_step_and_writes_the_report(tmp_path: Path):
    bench = tmp_path / "benchmarks.md"
    bench.write_text("# Benchmarks\n\nearlier text\n")
    r = _rehearse(tmp_path, "--benchmarks", str(bench), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]  # steps skipped for want of CUDA or a variant: no failure
    out = tmp_path / "gpu" / "cpu-rehearsal"
    data = json.loads((out / "results.json").read_text())
    assert [(s["name"], s["status"]) for s in data["steps"]] == STEPS
    start = next(s for s in data["steps"] if s["name"] == "http-start")
    served = start["served"]
    assert start["fronts"] >= 1  # the service's shape: its HTTP fronts in front of one engine
    assert set(served) == {"mha-tiny-random", "sha-tiny-random"} and all(served.values()), served
    assert data["gpu"]["name"] == "CPU rehearsal" and "CPUExecutionProvider" in data["providers"]
    assert set(data["inproc"]) == RAN
    cross = json.loads((out / "cross-gpu" / "results.json").read_text())["points"]
    assert {(p["batch"], p["seq"]) for p in cross} == {
        (8, 32)
    }  # the extension, in 2 blocks or up to 4 if noisy
    assert all(2 <= p["blocks"] <= 4 for p in cross)
    point = json.loads((out / "inproc-gpu" / "results.json").read_text())["points"][0]
    assert point["blocks"] >= 2 and point["p50_lo_ms"] <= point["p50_ms"] <= point["p50_hi_ms"]
    assert {r["model"] for r in data["http"]["http"]["capacity"]} == {"mha-tiny-random", "sha-tiny-random"}
    assert data["peak_tflops"]["fp32"] > 0 and {r["model"] for r in data["throughput"]} == set(served)
    assert [(r["model"], r["variant"]) for r in data["profile"]["rows"]] == [
        (m, v) for m in ("mha-tiny-random", "sha-tiny-random") for v in ("model.onnx", "model.gpu.onnx")
    ]
    assert set(data["fastest"]) == {"mha-tiny-random", "sha-tiny-random"}
    md = (out / "report.md").read_text()
    assert "## The paper's crossover on this GPU" in md and (out / "crossover.png").stat().st_size > 1000
    assert "## Where the time goes: ONNX Runtime's profiler ([profile](profile/report.md))" in md
    assert "| model | batch x seq | model.gpu.onnx | model.onnx | model.opt.onnx | torch eager fp32 |" in md
    assert (
        "## The demo's small pair, model.gpu.onnx" in md and "## Throughput against the measured peak" in md
    )
    text = bench.read_text()
    assert (
        text.startswith("# Benchmarks\n\nearlier text\n") and text.count("## GPU report: CPU rehearsal") == 1
    )
    # a rerun does only what is missing: here nothing, so every step is reused and the summary not repeated
    r = _rehearse(tmp_path, "--benchmarks", str(bench), "--budget-s", "5", timeout=200)
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads((out / "results.json").read_text())["steps"]
    ran = [
        name
        for name, status in STEPS
        if status == "ok" and name != "http-start" and not name.endswith("-report")
    ]  # a report already written is not made again
    assert [s["name"] for s in again if s["status"] == "reused"] == ran
    assert all(s["earlier_status"] == "ok" for s in again if s["status"] == "reused"), again
    assert bench.read_text().count("## GPU report: CPU rehearsal") == 1


def test_a_step_is_redone_unless_its_results_are_complete(tmp_path: Path):
    gr = steps
    done = tmp_path / "results.json"
    assert not gr.complete(done)
    done.write_text('{"meta": {}, "points": []}')  # written after every point: not yet complete
    assert not gr.complete(done)
    done.write_text('{"meta": {"elapsed_s": 3.5}, "points": []}')
    assert gr.complete(done)
    (tmp_path / "profile.json").write_text('{"complete": true}')
    assert gr.complete(tmp_path / "profile.json")
    (tmp_path / "cut.json").write_text('{"meta": {"elapsed_s"')
    assert not gr.complete(tmp_path / "cut.json")
    run = gr.Run(
        100.0, tmp_path, earlier={"a": {"status": "ok", "seconds": 7.0}, "t": {"status": "failed: exit 1"}}
    )
    assert run.step("a", [sys.executable, "-c", "raise SystemExit(3)"], done=[done]) is True  # not run
    assert run.step("b", [sys.executable, "-c", "raise SystemExit(3)"], done=[tmp_path / "cut.json"]) is False
    assert run.reuse("t") is False  # a failure found earlier stays a failure
    assert [(s["name"], s["status"]) for s in run.steps] == [
        ("a", "reused"),
        ("b", "failed: exit 3"),
        ("t", "failed earlier (reused)"),
    ]
    assert run.steps[0]["earlier_seconds"] == 7.0


def test_the_benchmarks_block_of_a_report_is_replaced_not_repeated():
    gr = gpu_round
    block = "\n## GPU report: X (2026-01-02, `make gpu-report`)\n\nnew\n"
    old = "# B\n\nintro\n\n## GPU report: X (2026-01-02, `make gpu-report`)\n\nold\n\n## Later\n\nkept\n"
    assert gr.with_block(old, block) == "# B\n\nintro\n\n## Later\n\nkept\n" + block
    assert gr.with_block("# B\n", block) == "# B\n" + block


def test_cuda_plan_runs_the_telling_steps_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA: the peak, the served configuration (model.gpu.onnx + CUDA graphs), the kernel
    profile and the crossover extension first; a variant not exported is skipped, not failed."""
    have = {"model.onnx", "model.gpu.onnx"}
    monkeypatch.setattr(gpu_round.Round, "variants", lambda self, repo=None, models=None: have)
    monkeypatch.setattr(gpu_round, "start_export", lambda *a: None)
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(
        gpu_round, "http_steps", lambda r, repo, models, folder, **kw: calls.append((folder, models, {}))
    )

    class Recorder:
        def step(
            self, name: str, cmd: list[str], *, env: dict[str, str] | None = None, done: object = None
        ) -> bool:
            calls.append((name, cmd, env or {}))
            return True

        def record(self, name: str, status: str, seconds: float, **kw: object) -> bool:
            calls.append((name, [status], {}))
            return steps.passed(status)

        def reuse(self, name: str, **kw: object) -> bool:
            return self.record(name, "reused", 0.0)

    r = gpu_round.Round(Recorder(), tmp_path / "repo", tmp_path / "out", plan.Plan())  # type: ignore[arg-type]
    for step in gpu_round.MEASURE:
        step(r)
    names = [name for name, _, _ in calls]
    assert names == [
        "peak",
        "inproc-served",
        "kernels",
        "cross-fp32",
        "cross-gpu",
        "torch",
        "small-served",
        "small-http",
        "train-cost",
        "inproc-gpu",
        "inproc-fp32",
        "inproc-fp16-graphs",
        "inproc-fp16",
        "inproc-opt",
        "profile",
        "http",
    ]
    by = {name: (cmd, env) for name, cmd, env in calls}
    cmd, env = by["inproc-served"]
    assert cmd[cmd.index("--variant") + 1] == "model.gpu.onnx" and env == {"H2H_CUDA_GRAPH": "true"}
    assert cmd[cmd.index("--inproc-blocks") + 1] == "5" and cmd[cmd.index("--repeats") + 1] == "2000"
    cross = by["cross-gpu"][0]
    assert cross[cross.index("--batch") + 1] == "128,256,512" and cross[cross.index("--seq") + 1] == "512"
    kern = by["kernels"][0]
    assert kern[kern.index("--variants") + 1] == "model.onnx,model.gpu.onnx"
    assert kern[kern.index("--torch-modes") + 1] == "eager-fp16,graph-fp16"
    assert by["inproc-fp16"][0] == ["skipped: no model.fp16.onnx"]
    assert by["small-http"][0] == ["mha-small-random", "sha-small-random"]
    small = by["small-served"][0]
    assert small[small.index("--repo") + 1].endswith("repo-small")
    assert by["torch"][0][by["torch"][0].index("--device") + 1] == "cuda"
    assert plan.labels(plan.Plan())["inproc-served"] == "model.gpu.onnx + CUDA graphs"


def test_a_cuda_provider_that_cannot_run_is_named_before_any_step():
    if _has_gpu():
        pytest.skip("this host has an NVIDIA GPU")
    why = preflight.cuda_provider_error()
    assert why is not None and why  # without a GPU: an error, or the session fell back to the CPU


def _round(cwd: Path, site: Path) -> subprocess.CompletedProcess:
    """scripts/gpu_device_round.sh in `cwd` with its packages unpacked to `site`."""
    script = ROOT / "scripts" / "gpu_device_round.sh"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "H2H_SITE": str(site)}
    cmd = ["bash", str(script), "10", str(cwd / "back")]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_device_round_script_refuses_without_the_packages(tmp_path: Path):
    """Exit 3 with one line at once when .carry was not carried."""
    r = _round(tmp_path, tmp_path / "site")
    assert r.returncode == 3 and r.stderr.strip().splitlines() == [
        "error: no .carry/site.tar.xz: run scripts/gpu_wheels.sh and carry .carry"
    ]


def test_device_round_script_unpacks_a_split_pack_once_every_part_is_there(tmp_path: Path):
    """ARCH=all packs travel one part per call: the packages are unpacked when the last arrives."""
    import io
    import lzma
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = bytes(range(256)) * 64
        info = tarfile.TarInfo("onnxruntime/probe.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    packed = lzma.compress(buf.getvalue())
    half = len(packed) // 2
    for i, chunk in ((1, packed[:half]), (2, packed[half:])):
        (tmp_path / ".carry" / f"part-{i}").mkdir(parents=True)
        (tmp_path / ".carry" / f"part-{i}" / "chunk").write_bytes(chunk)
        (tmp_path / ".carry" / f"part-{i}" / "of").write_text("2\n")
        if i == 1:
            r = _round(tmp_path, tmp_path / "site")
            assert r.returncode == 0 and "have 1 of 2 parts: carry the next one" in r.stdout
            assert not (tmp_path / "site").exists()
    r = _round(tmp_path, tmp_path / "site")  # goes on to the report, which is not in this folder
    assert (tmp_path / "site" / "onnxruntime" / "probe.bin").read_bytes() == data
    assert (tmp_path / "site" / ".unpacked").is_file() and r.returncode != 0
