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
from tests.conftest import inproc_pair_rows, script_module

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_report.py"


def gpu_report_module() -> ModuleType:
    return script_module("gpu_report")


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


STEPS = [
    "export",
    "profile",
    "inproc-fp16",
    "inproc-gpu",
    "torch",
    "inproc-fp32",
    "inproc-opt",
    "service-start",
    "http-sweep",
    "capacity",
]


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_step_and_writes_the_report(tmp_path: Path):
    bench = tmp_path / "benchmarks.md"
    bench.write_text("# Benchmarks\n\nearlier text\n")
    r = _rehearse(tmp_path, "--benchmarks", str(bench), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "gpu" / "cpu-rehearsal"
    data = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in data["steps"]] == STEPS
    assert all(s["status"] == "ok" for s in data["steps"]), data["steps"]
    served = next(s for s in data["steps"] if s["name"] == "service-start")["served"]
    assert set(served) == {"mha-tiny-random", "sha-tiny-random"} and all(served.values()), served
    assert data["gpu"]["name"] == "CPU rehearsal" and "CPUExecutionProvider" in data["providers"]
    assert set(data["inproc"]) == {
        "inproc-fp32",
        "inproc-fp16",
        "inproc-gpu",
        "inproc-opt",
        "torch-eager-fp32",
    }
    assert {r["model"] for r in data["http"]["capacity"]} == {"mha-tiny-random", "sha-tiny-random"}
    for sub in ("inproc-fp32", "inproc-fp16", "inproc-gpu", "inproc-opt", "http"):
        assert (out / sub / "results.json").is_file() and (out / sub / "report.md").is_file()
    assert (out / "http" / "capacity.json").is_file() and (
        out / "torch-eager-fp32" / "results.json"
    ).is_file()
    prof = data["profile"]
    assert [(r["model"], r["variant"]) for r in prof["rows"]] == [
        (m, v)
        for m in ("mha-tiny-random", "sha-tiny-random")
        for v in ("model.onnx", "model.fp16.onnx", "model.gpu.onnx")
    ]
    assert set(data["fastest"]) == {"mha-tiny-random", "sha-tiny-random"}
    md = (out / "report.md").read_text()
    assert "## The paper's crossover on this GPU" in md and "in-process, model.fp16.onnx" in md
    assert "## Where the time goes ([profile](profile/report.md))" in md
    assert (
        "| model | batch x seq | model.fp16.onnx | model.gpu.onnx | model.onnx | model.opt.onnx | torch eager fp32 |"
        in md
    )
    text = bench.read_text()
    assert (
        text.startswith("# Benchmarks\n\nearlier text\n") and text.count("## GPU report: CPU rehearsal") == 1
    )
    # a rerun does only what is missing: here nothing, so every step is reused and the summary not repeated
    r = _rehearse(tmp_path, "--benchmarks", str(bench), "--budget-s", "5", timeout=200)
    assert r.returncode == 0, r.stderr[-3000:]
    steps = json.loads((out / "results.json").read_text())["steps"]
    assert [s["name"] for s in steps] == [n for n in STEPS if n != "service-start"]
    assert all(s["status"] == "reused" and s["earlier_status"] == "ok" for s in steps), steps
    assert bench.read_text().count("## GPU report: CPU rehearsal") == 1


def test_a_step_is_redone_unless_its_results_are_complete(tmp_path: Path):
    gr = gpu_report_module()
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
    gr = gpu_report_module()
    block = "\n## GPU report: X (2026-01-02, `make gpu-report`)\n\nnew\n"
    old = "# B\n\nintro\n\n## GPU report: X (2026-01-02, `make gpu-report`)\n\nold\n\n## Later\n\nkept\n"
    assert gr.with_block(old, block) == "# B\n\nintro\n\n## Later\n\nkept\n" + block
    assert gr.with_block("# B\n", block) == "# B\n" + block


def test_cuda_plan_runs_the_telling_steps_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA: the profile, fp16 and the GPU variant first, then PyTorch, fp32 and fp16 replayed as
    CUDA graphs (the only sweep with H2H_CUDA_GRAPH on), a variant not exported skipped, the service
    on its own choice of variant; the CPU rehearsal has no graphs to replay and skips that sweep."""
    gr = gpu_report_module()
    have = {"model.onnx", "model.fp16.onnx", "model.gpu.onnx"}
    monkeypatch.setattr(gr, "_variants_in", lambda repo, plan: have)
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(
        gr, "http_steps", lambda run, repo, out, plan, variant: calls.append(("http", [variant], {}))
    )

    class Recorder:
        def step(
            self, name: str, cmd: list[str], *, env: dict[str, str] | None = None, done: object = None
        ) -> bool:
            calls.append((name, cmd, env or {}))
            return True

        def record(self, name: str, status: str, seconds: float) -> bool:
            calls.append((name, [status], {}))
            return False

    gr.measure(Recorder(), tmp_path / "repo", tmp_path / "out", gr.Plan(), "auto")
    assert [name for name, _, _ in calls] == [
        "profile",
        "inproc-fp16",
        "inproc-gpu",
        "torch",
        "inproc-fp32",
        "inproc-fp16-graphs",
        "inproc-opt",
        "http",
    ]
    by = {name: (cmd, env) for name, cmd, env in calls}
    graphs = {name: env["H2H_CUDA_GRAPH"] for name, (_, env) in by.items() if "H2H_CUDA_GRAPH" in env}
    assert graphs == {
        "inproc-fp16": "false",
        "inproc-gpu": "false",
        "inproc-fp32": "false",
        "inproc-fp16-graphs": "true",
    }
    cmd = by["inproc-fp16-graphs"][0]
    assert cmd[cmd.index("--variant") + 1] == "model.fp16.onnx"
    prof = by["profile"][0]
    assert prof[prof.index("--variant") + 1] == "model.onnx,model.fp16.onnx,model.gpu.onnx"
    assert prof[prof.index("--provider") + 1] == "cuda" and prof[prof.index("--seq") + 1] == "128"
    torch_cmd = by["torch"][0]
    assert torch_cmd[torch_cmd.index("--modes") + 1] == "eager-fp16,graph-fp16" and "--device" in torch_cmd
    assert by["inproc-opt"][0] == ["skipped: no model.opt.onnx"] and by["http"][0] == ["auto"]
    assert gr.VARIANTS["inproc-fp16-graphs"] == "model.fp16.onnx + CUDA graphs"
    calls.clear()
    gr.measure(Recorder(), tmp_path / "repo", tmp_path / "out", gr.REHEARSAL, "auto")
    assert "inproc-fp16-graphs" not in [name for name, _, _ in calls]


def test_a_cuda_provider_that_cannot_run_is_named_before_any_step():
    if _has_gpu():
        pytest.skip("this host has an NVIDIA GPU")
    why = gpu_report_module().cuda_provider_error()
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
