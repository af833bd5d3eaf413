"""`make gpu-report`: every GPU measurement of the project in one command, on a CUDA host.

    python scripts/gpu_report.py [--repo results/gpu-repository] [--out-root docs/gpu] [--budget-s 400]

Steps, most telling first, each timed and bounded by what is left of the budget (docs/gpu/RUNBOOK.md
has the device calls that carry the packages and run it):

1. export the BERT-base-size random-init pair (12L-12H, 144L-1H) with `--fp16 --fp16-tolerance 0.1`
   (fp16 error accumulates over 288 residual sublayers; docs/benchmarks.md) and, where export offers
   it, `--gpu` (model.gpu.onnx, fused for CUDA then fp16), MHA and SHA in parallel in the background
   while `pytest -m gpu` runs (CUDA IO-binding parity with the CPU, NVML metrics);
2. where the time goes: `loadtest profile` on CUDA, batch 1 x seq 128, every variant present;
3. the paper's in-process sweep on CUDA (batch 1,4,16,64 x sequence 32,128,512) for fp16, the fused
   GPU variant, then the PyTorch reference on the same weights (eager fp16, fp16 as a CUDA graph;
   scripts/bench_torch.py), fp32, and fp16 replayed as captured CUDA graphs;
4. the service on CUDA (its own choice: the best variant proven there) on a free loopback port, the HTTP
   sweep (batch 1,8 x sequence 32,128 x concurrency 1,16) and the capacity search (p99 <= 50 ms,
   batch 1 x sequence 32), with 4 load-client processes;
5. docs/gpu/<gpu-name>/: report.md, results.json (GPU name, driver, providers, versions, step
   timings, crossover facts) and one results folder per step with its own report; a summary is
   appended to docs/benchmarks.md.

A rerun does only what is missing: every step writes its results atomically and marks them complete
last, and a step whose results are complete is reused (`--fresh` starts over). So a run cut short by
the budget is finished by running the same command again.
Without an NVIDIA GPU (NVML) and ONNX Runtime's CUDA provider it exits 2 with one line.
`--rehearse-cpu` runs the same pipeline on the CPU with the tiny preset and seconds-long points
(no GPU figures; it checks the pipeline, and the tests use it).
Exit codes: 0 every step passed; 1 a step failed (the report says which); 2 no GPU or bad flags.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from contract.cli import fail, settings_from, settings_parser  # noqa: E402
from loadtest import processes  # noqa: E402
from service.runtime import nvml  # noqa: E402

# result folder -> (variant file, CUDA graphs), in the order they run: the fp16 sweep again with
# each shape replayed as a captured CUDA graph shows the paper's ratio without the deep model's
# kernel-launch cost. A variant the export did not write is skipped.
SWEEPS = {
    "inproc-fp16": ("model.fp16.onnx", False),
    "inproc-gpu": ("model.gpu.onnx", False),
    "inproc-fp32": ("model.onnx", False),
    "inproc-fp16-graphs": ("model.fp16.onnx", True),
    "inproc-opt": ("model.opt.onnx", False),
}
TORCH_LABELS = {
    "eager-fp32": "torch eager fp32",
    "eager-fp16": "torch eager fp16",
    "graph-fp16": "torch fp16 + CUDA graph",
    "compile-fp16": "torch.compile fp16",
}
VARIANTS = {
    **{
        folder: variant + (" + CUDA graphs" if graphs else "") for folder, (variant, graphs) in SWEEPS.items()
    },
    **{f"torch-{mode}": label for mode, label in TORCH_LABELS.items()},
}
EXPORT_FILES = {"--optimize": "model.opt.onnx", "--fp16": "model.fp16.onnx", "--gpu": "model.gpu.onnx"}


@dataclass(frozen=True)
class Plan:
    """Models, grids and durations: the GPU defaults, or the CPU rehearsal's seconds-long ones."""

    preset: str = "base"
    provider: str = "cuda"
    inproc_batch: str = "1,4,16,64"
    inproc_seq: str = "32,128,512"
    inproc_budget: str = "0.3"
    http_batch: str = "1,8"
    http_seq: str = "32,128"
    concurrency: str = "1,16"
    duration: str = "2"
    cap_batch: str = "1"
    cap_seq: str = "32"
    probe_duration: str = "2"
    max_probes: str = "5"
    client_procs: str = "4"
    export_extra: tuple[str, ...] = ("--fp16", "--fp16-tolerance", "0.1", "--gpu")
    profile_seq: str = "128"
    torch_modes: str = "eager-fp16,graph-fp16"

    @property
    def models(self) -> list[str]:
        return [f"mha-{self.preset}-random", f"sha-{self.preset}-random"]


# the CPU rehearsal: the tiny preset on small grids, with seconds-long points and probes
_CPU_GRIDS = dict(inproc_batch="1,4", inproc_seq="16,32", http_batch="1,4", http_seq="16", cap_seq="16")
_CPU_TIMES = dict(inproc_budget="0.1", duration="0.3", probe_duration="0.3", max_probes="3")
_CPU_RUNS = dict(profile_seq="16", torch_modes="eager-fp32")
REHEARSAL = Plan(
    preset="tiny",
    provider="cpu",
    concurrency="1,4",
    client_procs="2",
    export_extra=("--optimize", "--fp16", "--gpu"),
    **_CPU_GRIDS,
    **_CPU_TIMES,
    **_CPU_RUNS,
)


def python_m(module: str, *args: str, **flags: object) -> list[str]:
    """`python -m module args --flag value ...`, the flags in keyword order (`a_b` is `--a-b`, and a
    flag given True stands alone), so each step's command reads as one call."""
    cmd = [sys.executable, "-m", module, *args]
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        cmd += [flag] if value is True else [flag, str(value)]
    return cmd


def gpu_facts() -> dict[str, Any] | None:
    """Name, driver and memory of GPU 0 through NVML; None without an NVIDIA GPU (or when NVML
    cannot say all of these: the report names the card it measured, or refuses to run)."""
    host = nvml.probe()
    if host is None or host.count == 0:
        return None
    facts = {
        "name": host.gpus[0].name,
        "driver": host.driver,
        "cuda_driver": host.cuda_driver,
        "count": host.count,
        "memory_gib": host.gpus[0].memory_gib,
    }
    return None if None in facts.values() else facts


def complete(path: Path) -> bool:
    """A step's result file, whole: results.json / capacity.json whose meta has `elapsed_s` (written
    last, when the step finished) or profile.json marked complete. Unreadable or cut short: False."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    return data.get("complete") is True or (data.get("meta") or {}).get("elapsed_s") is not None


@dataclass
class Run:
    """The budget, the record of every step, and what an earlier run already finished."""

    budget_s: float
    logs: Path
    t0: float = field(default_factory=time.monotonic)
    steps: list[dict[str, Any]] = field(default_factory=list)
    earlier: dict[str, dict[str, Any]] = field(default_factory=dict)  # step name -> its last record

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def record(self, name: str, status: str, seconds: float, **extra: Any) -> bool:
        log = self.logs / f"{name}.log"
        if status.startswith("failed") and log.is_file():  # the committed results.json says why
            extra["log_tail"] = log.read_text(errors="replace").splitlines()[-20:]
        self.steps.append({"name": name, "status": status, "seconds": round(seconds, 1), **extra})
        print(
            f"[{time.monotonic() - self.t0:5.0f} s] {name}: {status} ({seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        return status in ("ok", "reused", "skipped: no gpu tests")

    def reuse(self, name: str, **extra: Any) -> bool:
        """Record a step whose results an earlier run left complete (with that run's seconds)."""
        before = self.earlier.get(name, {})
        if before.get("status", "").startswith("reused") or before.get("status", "").startswith(
            "failed earlier"
        ):
            said = {k: before[k] for k in ("earlier_status", "earlier_seconds") if k in before}
        else:
            said = {f"earlier_{k}": before[k] for k in ("status", "seconds") if k in before}
        failed = str(said.get("earlier_status", "")).startswith("failed")
        return self.record(name, "failed earlier (reused)" if failed else "reused", 0.0, **extra, **said)

    def step(
        self,
        name: str,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        ok_codes: tuple = (0,),
        done: list[Path] | None = None,
    ) -> bool:
        """Run one command with what is left of the budget; its output goes to logs/<name>.log.
        With `done` (its result files), a step whose results are all complete is reused instead."""
        if done and all(complete(f) for f in done):
            return self.reuse(name)
        left = self.left()
        if left < 5:
            return self.record(name, "skipped: out of time", 0.0)
        t = time.monotonic()
        with (self.logs / f"{name}.log").open("w") as log:
            try:
                rc = subprocess.run(
                    cmd,
                    cwd=ROOT,
                    env={**os.environ, **(env or {})},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=left,
                ).returncode
            except subprocess.TimeoutExpired:
                return self.record(name, "failed: out of time", time.monotonic() - t, command=" ".join(cmd))
        status = "ok" if rc in ok_codes else f"failed: exit {rc}"
        if rc == 5 and name == "gpu-tests":
            status = "skipped: no gpu tests"
        return self.record(name, status, time.monotonic() - t, command=" ".join(cmd))


def export_flags(plan: Plan) -> list[str]:
    """The plan's export flags that this checkout's export offers (`--gpu` only where it exists)."""
    from dataclasses import fields

    from export.settings import ExportOptions

    offered = {"--" + f.name.replace("_", "-") for f in fields(ExportOptions)}
    return [f for f in plan.export_extra if not f.startswith("--") or f in offered]


def _variants_in(repo: Path, plan: Plan) -> set[str]:
    """Variant files every model of the plan has in `repo` (empty when one is missing)."""
    from contract.manifest import load_manifest

    try:
        return set.intersection(*(set(load_manifest(repo / m).variants) for m in plan.models))
    except Exception:
        return set()


def _repo_ready(repo: Path, plan: Plan) -> bool:
    """True when both models are there with every variant the export step would write."""
    want = {"model.onnx"} | {EXPORT_FILES[f] for f in export_flags(plan) if f in EXPORT_FILES}
    return want <= _variants_in(repo, plan)


@dataclass
class Export:
    """The two export processes (MHA, SHA) running in the background, or None when reused."""

    procs: list[tuple[str, subprocess.Popen, Any]]
    t0: float


def start_export(run: Run, repo: Path, plan: Plan) -> Export | None:
    """Both models at once (two processes), left running while the GPU tests run: the 144-layer
    export is the long pole, and it needs the CPU, not the GPU. None: the repository is complete."""
    if _repo_ready(repo, plan):
        run.reuse("export", repo=str(repo))
        return None
    threads = str(max(1, (os.cpu_count() or 2) // 2))
    procs = []
    for arch in ("mha", "sha"):
        cmd = python_m(
            "export", random_init=True, preset=plan.preset, arch=arch, repo=repo, threads=threads
        ) + export_flags(plan)
        log = (run.logs / f"export-{arch}.log").open("w")
        procs.append((arch, subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log))
    return Export(procs, time.monotonic())


def finish_export(run: Run, repo: Path, job: Export | None) -> bool:
    """Wait for the exports (within the budget); True when both finished."""
    if job is None:
        return True
    rcs = []
    for _, p, log in job.procs:
        try:
            rcs.append(p.wait(timeout=max(1.0, run.left())))
        except subprocess.TimeoutExpired:
            p.kill()
            rcs.append(p.wait())
        log.close()
    status = "ok" if rcs == [0, 0] else f"failed: exit {rcs}"
    tails = {
        arch: (run.logs / f"export-{arch}.log").read_text(errors="replace").splitlines()[-20:]
        for (arch, _, _), rc in zip(job.procs, rcs, strict=True)
        if rc != 0
    }
    return run.record(
        "export", status, time.monotonic() - job.t0, repo=str(repo), **({"log_tails": tails} if tails else {})
    )


def profile_step(run: Run, repo: Path, out: Path, plan: Plan) -> None:
    """Where one run's time goes, per model and variant (`loadtest profile`), at batch 1."""
    have = [v for v in ("model.onnx", "model.fp16.onnx", "model.gpu.onnx") if v in _variants_in(repo, plan)]
    cmd = python_m(
        "loadtest",
        "profile",
        repo=repo,
        models=",".join(plan.models),
        provider=plan.provider,
        variant=",".join(have),
        batch=1,
        seq=plan.profile_seq,
        out=out / "profile",
    )
    run.step("profile", cmd, done=[out / "profile" / "profile.json"])


def inproc_sweep(run: Run, repo: Path, out: Path, plan: Plan, folder: str) -> None:
    """One in-process sweep of SWEEPS; skipped where the variant was not exported or, off CUDA,
    where it replays CUDA graphs."""
    variant, graphs = SWEEPS[folder]
    if graphs and plan.provider != "cuda":
        return  # graphs exist on CUDA only; the CPU rehearsal has nothing to replay
    if variant not in _variants_in(repo, plan):
        run.record(folder, f"skipped: no {variant}", 0.0)
        return
    run.step(
        folder,
        python_m(
            "loadtest",
            "sweep",
            mode="inproc",
            models=",".join(plan.models),
            repo=repo,
            provider=plan.provider,
            variant=variant,
            batch=plan.inproc_batch,
            seq=plan.inproc_seq,
            inproc_budget=plan.inproc_budget,
            out=out / folder,
        ),
        env={"H2H_CUDA_GRAPH": "true" if graphs else "false"},
        done=[out / folder / "results.json"],
    )


def torch_step(run: Run, repo: Path, out: Path, plan: Plan) -> None:
    """The PyTorch reference on the same weights and grid (scripts/bench_torch.py)."""
    modes = plan.torch_modes.split(",")
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_torch.py")]
    cmd += ["--repo", str(repo), "--models", ",".join(plan.models), "--modes", plan.torch_modes]
    cmd += ["--device", "cuda" if plan.provider == "cuda" else "cpu", "--batch", plan.inproc_batch]
    cmd += ["--seq", plan.inproc_seq, "--budget-s", plan.inproc_budget, "--out", str(out)]
    cmd += [] if plan.provider == "cuda" else ["--threads", "1"]  # the rehearsal shares 2 cores
    run.step("torch", cmd, done=[out / f"torch-{m}" / "results.json" for m in modes])


def measure(run: Run, repo: Path, out: Path, plan: Plan, serve_variant: str) -> None:
    """Every step after the export, most telling first, so a short budget keeps what matters."""
    profile_step(run, repo, out, plan)
    for folder in ("inproc-fp16", "inproc-gpu"):
        inproc_sweep(run, repo, out, plan, folder)
    torch_step(run, repo, out, plan)
    for folder in ("inproc-fp32", "inproc-fp16-graphs", "inproc-opt"):
        inproc_sweep(run, repo, out, plan, folder)
    http_steps(run, repo, out, plan, serve_variant)


def http_steps(run: Run, repo: Path, out: Path, plan: Plan, variant: str) -> None:
    """The service on `plan.provider` (with `variant`, or its own choice for "auto") on a free
    loopback port, the HTTP sweep and the capacity search against it, then SIGTERM."""
    http = out / "http"
    if complete(http / "results.json") and complete(http / "capacity.json"):
        run.reuse("http-sweep")
        run.reuse("capacity")
        return
    if run.left() < 30:
        run.record("http", "skipped: out of time", 0.0)
        return
    env = {
        "H2H_PROVIDER": plan.provider,
        **({} if variant == "auto" else {"H2H_VARIANT": variant}),
        "H2H_LOG_LEVEL": "warning",
        "H2H_MODELS": json.dumps(plan.models),
        "H2H_REQUIRE_ALL_MODELS": "true",
    }
    t = time.monotonic()
    try:
        with processes.serving(
            processes.service_args(repo),
            ready_path="/v2/health/ready",
            log=run.logs / "service-start.log",
            env=env,
            timeout=min(240.0, max(5.0, run.left())),
            grace=40.0,
        ) as srv:
            served = _served_variants(srv.base)
            run.record(
                "service-start",
                "ok",
                time.monotonic() - t,
                variant=variant,
                served=served,
                provider=plan.provider,
            )
            _load_steps(run, srv.base, out, plan)
    except processes.NotReady as exc:
        status = f"failed: {str(exc).splitlines()[0]}"
        run.record("service-start", status, time.monotonic() - t, variant=variant)


def _load_steps(run: Run, url: str, out: Path, plan: Plan) -> None:
    http = out / "http"
    load = dict(url=url, models=",".join(plan.models))
    procs = dict(client_procs=plan.client_procs, out=http)
    sweep = dict(
        batch=plan.http_batch, seq=plan.http_seq, concurrency=plan.concurrency, duration=plan.duration
    )
    run.step(
        "http-sweep",
        python_m("loadtest", "sweep", mode="http", **load, **sweep, **procs, no_report=True),
        done=[http / "results.json"],
    )
    cap = dict(batch=plan.cap_batch, seq=plan.cap_seq, slo_p99_ms=50, probe_duration=plan.probe_duration)
    run.step(
        "capacity",
        python_m("loadtest", "capacity", **load, **cap, max_probes=plan.max_probes, **procs),
        done=[http / "capacity.json"],
    )
    if not (http / "report.md").is_file() and (http / "results.json").is_file():
        run.step("http-report", python_m("loadtest", "report", str(http)))


def _served_variants(url: str) -> dict[str, Any]:
    """Model -> the variant the service chose to serve ({} when it cannot be asked)."""
    from loadtest.client.load import list_models

    try:
        return {m["name"]: m.get("variant") for m in list_models(url)}
    except Exception as exc:  # noqa: BLE001 - the record says why, the steps go on
        return {"error": f"{type(exc).__name__}: {exc}"}


def write_outputs(run: Run, out: Path, facts: dict[str, Any], benchmarks: Path | None) -> None:
    """report.md and results.json in `out`; the summary appended to `benchmarks` (atomically)."""
    from contract.atomic import write_json, write_text
    from loadtest import results
    from loadtest.report import gpu_summary

    facts.update(steps=run.steps, elapsed_s=round(time.monotonic() - run.t0, 1))
    summary = gpu_summary.collect(out, {k: v for k, v in VARIANTS.items() if (out / k).is_dir()})
    write_json(
        out / "results.json",
        {**facts, **summary, "machine": results.machine(), "versions": results.versions()},
    )
    facts.update(machine=results.machine(), versions=results.versions())
    write_text(out / "report.md", gpu_summary.report_md(facts, summary, out))
    if benchmarks is not None:
        # the link points where the folder is committed (docs/gpu/<gpu-name>/), also when the run
        # wrote it elsewhere first (results/gpu/ on a device host, kept between calls there)
        try:
            rel = os.path.relpath(ROOT / "docs" / "gpu" / out.name, benchmarks.resolve().parent)
        except ValueError:
            rel = str(out)
        old = benchmarks.read_text(encoding="utf-8") if benchmarks.is_file() else "# Benchmarks\n"
        write_text(benchmarks, with_block(old, gpu_summary.benchmarks_block(facts, summary, rel)))


def with_block(text: str, block: str) -> str:
    """`text` with `block` appended, or in place of the block a previous run of the same report
    (same heading: GPU and date) appended, so finishing a report with a rerun does not repeat it."""
    heading = block.strip("\n").splitlines()[0]
    at = text.find("\n" + heading)
    if at >= 0:
        nxt = text.find("\n## ", at + 1)
        text = text[:at] + (text[nxt:] if nxt >= 0 else "")
    return text.rstrip("\n") + "\n" + block


def cuda_provider_error() -> str | None:
    """Why ONNX Runtime's CUDA provider cannot run a one-node graph here, or None when it can.
    Checked before any step: a provider library that does not load (missing CUDA libraries, code
    for another GPU generation) otherwise shows up minutes later as a silent CPU fallback."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from service.runtime.session import CUDA, preload_cuda_libraries

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe", [x], [x])
    graph.output[0].name = "y"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    preload_cuda_libraries()
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=[CUDA])
        y = sess.run(None, {"x": np.arange(4, dtype=np.float32)})[0]
    except Exception as exc:  # noqa: BLE001 - the reason is the answer
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if sess.get_providers()[0] != CUDA:
        return f"the session runs on {sess.get_providers()[0]}"
    return None if y.tolist() == [0.0, 2.0, 4.0, 6.0] else f"wrong answer {y.tolist()}"


def _earlier(out: Path) -> dict[str, Any]:
    """The results.json an earlier run of this report left in `out` ({} if none)."""
    try:
        data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class GpuReportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo: str = Field(
        default="results/gpu-repository",
        description="model repository for the exports (reused when complete)",
    )
    logs: str = Field(default="results/gpu-report-logs", description="one log per step (not committed)")
    out_root: str | None = Field(
        default=None,
        description="the report goes to OUT_ROOT/<gpu-name>/ (default docs/gpu; rehearsal: results/gpu-rehearsal)",
    )
    benchmarks: str | None = Field(
        default=None,
        description="file the summary is appended to (default docs/benchmarks.md; rehearsal: none; '' for none)",
    )
    budget_s: float = Field(default=400.0, gt=0, description="seconds for all steps")
    serve_variant: str = Field(
        default="auto",
        description="variant the service runs for the HTTP steps (auto: the service's own choice, its best "
        "variant proven on the provider; on CUDA model.gpu.onnx once proven at start)",
    )
    skip_tests: bool = Field(default=False, description="skip `pytest -m gpu`")
    fresh: bool = Field(default=False, description="discard the results of earlier runs and redo every step")
    rehearse_cpu: bool = Field(
        default=False,
        description="run the pipeline on the CPU with the tiny preset (checks the pipeline; no GPU figures)",
    )


def _preflight(rehearse_cpu: bool) -> tuple[dict, list[str]]:
    """The GPU's facts and ONNX Runtime's providers, or exit 2 with one line at once: a missing GPU,
    CUDA provider or a provider that cannot run a graph would otherwise cost the whole budget."""
    facts_gpu = {"name": "CPU rehearsal", "driver": "none"} if rehearse_cpu else gpu_facts()
    if facts_gpu is None:
        fail(
            "no NVIDIA GPU on this host (NVML finds none): make gpu-report needs a CUDA GPU and onnxruntime-gpu"
        )
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if not rehearse_cpu and "CUDAExecutionProvider" not in providers:
        fail(
            f"onnxruntime has no CUDAExecutionProvider (has {', '.join(providers)}): install onnxruntime-gpu"
        )
    why = None if rehearse_cpu else cuda_provider_error()
    if why:
        fail(f"onnxruntime's CUDA provider cannot run a graph here ({why}): see docs/gpu/RUNBOOK.md")
    return facts_gpu, providers


def _gpu_tests(run: Run, junit: Path) -> None:
    """`pytest -m gpu`, its results in `junit`; reused when a rerun finds them."""
    if junit.is_file():
        run.reuse("gpu-tests")
        return
    tests = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
    ]
    run.step("gpu-tests", tests)


def main(argv: list[str] | None = None) -> int:
    p = settings_parser(GpuReportSettings, "gpu_report", __doc__.splitlines()[0])
    a = settings_from(GpuReportSettings, p.parse_args(argv))
    plan = REHEARSAL if a.rehearse_cpu else Plan()
    out_root = a.out_root or ("results/gpu-rehearsal" if a.rehearse_cpu else "docs/gpu")
    benchmarks = (
        a.benchmarks if a.benchmarks is not None else ("" if a.rehearse_cpu else "docs/benchmarks.md")
    )
    facts_gpu, providers = _preflight(a.rehearse_cpu)
    from loadtest.report.gpu_summary import slug

    out = ROOT / out_root / slug(facts_gpu["name"])
    logs = ROOT / a.logs
    if a.fresh:
        shutil.rmtree(out, ignore_errors=True)
        (logs / "gpu-tests.xml").unlink(missing_ok=True)
    earlier = _earlier(out)
    out.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    run = Run(a.budget_s, logs, earlier={s["name"]: s for s in earlier.get("steps", [])})
    created = earlier.get("created") or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    print(f"gpu-report: {facts_gpu['name']}, budget {a.budget_s:.0f} s, writing {out}", file=sys.stderr)
    repo = ROOT / a.repo
    job = start_export(run, repo, plan)
    if not (a.skip_tests or a.rehearse_cpu):
        _gpu_tests(run, logs / "gpu-tests.xml")
    if finish_export(run, repo, job):
        measure(run, repo, out, plan, a.serve_variant)
    facts = {
        "gpu": facts_gpu,
        "providers": providers,
        "created": created,
        "plan": plan.__dict__ | {"models": plan.models},
    }
    write_outputs(run, out, facts, (ROOT / benchmarks) if benchmarks else None)
    print(f"wrote {out / 'report.md'}", file=sys.stderr)
    return 0 if all(s["status"] in ("ok", "reused", "skipped: no gpu tests") for s in run.steps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
