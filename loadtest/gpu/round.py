"""`make gpu-report` / `python -m loadtest gpu-report`: every GPU measurement of the project in one
command, on a CUDA host (docs/gpu/RUNBOOK.md has how to run it on a borrowed host).

Steps, most telling first, each timed and bounded by what is left of the budget:

1. export the BERT-base-size random-init pair (12L-12H, 144L-1H) with `--gpu` (model.gpu.onnx, fused
   for CUDA then fp16, `--fp16-tolerance 0.1`), MHA and SHA in parallel in the background while
   `pytest -m gpu` runs;
2. then `MEASURE` in order: the matmul peak probe; the served configuration in-process
   (model.gpu.onnx, CUDA graphs, IO binding); the CUDA kernel profile (CUPTI through
   torch.profiler); the SHA/MHA ratio along tokens per batch (seq 512, batch to 512, fp32/TF32 and
   fused fp16); the PyTorch reference; the demo's small pair (served configuration and HTTP
   capacity); the training step's cost (models.train_cost); the other in-process variants; ONNX Runtime's own profile; the service over HTTP
   with the capacity search;
3. OUT_ROOT/<gpu-name>/: report.md, results.json (GPU, versions, step timings, crossover facts) and
   one folder per step with its own report; a summary appended to docs/benchmarks.md.

A rerun does only what is missing: every step writes its results atomically and marks them complete
last, and a step whose results are complete is reused (`--fresh` starts over). `--rehearse-cpu`
runs the same pipeline on the CPU with the tiny preset (no GPU figures; the tests use it).
Exit codes: 0 every step that could run ran (a step skipped for want of its input, such as a
variant the export does not write, is no failure); 1 a step failed; 2 no usable GPU or bad flags;
4 nothing failed but the budget ran out (the same command again finishes).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from contract import results
from contract.atomic import write_json, write_text
from contract.manifest import FP16_FILE, FP32_FILE, load_manifest
from loadtest import processes
from loadtest.client.load import list_models
from loadtest.gpu import page, summary
from loadtest.gpu.plan import EXPORT_FILES, REHEARSAL, SERVED, Plan, Sweep, labels
from loadtest.gpu.settings import GpuReportSettings
from loadtest.gpu.steps import OUT_OF_TIME, ROOT, Run, complete, exit_code, python_m
from service.runtime import nvml
from service.settings import ServiceSettings


@dataclass
class Round:
    """What every step reads: the run's record, the repository, the report folder, the plan."""

    run: Run
    repo: Path
    out: Path
    plan: Plan
    serve_variant: str = "auto"

    @property
    def cuda(self) -> bool:
        return self.plan.provider == "cuda"

    def variants(self, repo: Path | None = None, models: list[str] | None = None) -> set[str]:
        """Variant files every model has in the repository (empty when one is missing)."""
        try:
            return set.intersection(
                *(set(load_manifest((repo or self.repo) / m).variants) for m in models or self.plan.models)
            )
        except (OSError, ValueError) as exc:
            print(f"gpu-report: {exc}", file=sys.stderr)
            return set()


Step = Callable[[Round], None]


@dataclass
class Export:
    """Export processes running in the background (one per architecture)."""

    name: str
    procs: list[tuple[str, subprocess.Popen, Any]]
    t0: float


def start_export(r: Round, name: str, repo: Path, preset: str, extra: tuple[str, ...]) -> Export | None:
    """Both architectures at once, left running while other work goes on (the 144-layer export is
    the long pole, and it needs the CPU, not the GPU). None: the repository is already complete."""
    models = [f"{a}-{preset}-random" for a in ("mha", "sha")]
    flags = list(extra)
    want = {FP32_FILE} | {EXPORT_FILES[f] for f in flags if f in EXPORT_FILES}
    if want <= r.variants(repo, models):
        r.run.reuse(name, repo=str(repo))
        return None
    threads = str(max(1, (os.cpu_count() or 2) // 2))
    procs = []
    for arch in ("mha", "sha"):
        cmd = python_m("export", random_init=True, preset=preset, arch=arch, repo=repo, threads=threads)
        log = (r.run.logs / f"{name}-{arch}.log").open("w")
        procs.append(
            (arch, subprocess.Popen(cmd + flags, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log)
        )
    return Export(name, procs, time.monotonic())


def finish_export(r: Round, job: Export | None, repo: Path) -> bool:
    """Wait for the exports (within the budget); True when both finished."""
    if job is None:
        return True
    rcs = []
    for _, p, log in job.procs:
        try:
            rcs.append(p.wait(timeout=max(1.0, r.run.left())))
        except subprocess.TimeoutExpired:
            p.kill()
            rcs.append(p.wait())
        log.close()
    status = "ok" if rcs == [0, 0] else f"failed: exit {rcs}"
    tails = {
        arch: (r.run.logs / f"{job.name}-{arch}.log").read_text(errors="replace").splitlines()[-20:]
        for (arch, _, _), rc in zip(job.procs, rcs, strict=True)
        if rc != 0
    }
    extra = {"log_tails": tails} if tails else {}
    return r.run.record(job.name, status, time.monotonic() - job.t0, repo=str(repo), **extra)


def sweep_step(r: Round, sw: Sweep, *, repo: Path | None = None, models: list[str] | None = None) -> None:
    """One in-process sweep; skipped where the variant was not exported or, off CUDA, where it
    replays CUDA graphs (graphs exist on CUDA only)."""
    if sw.graphs and not r.cuda:
        r.run.record(sw.folder, "skipped: CUDA graphs need CUDA", 0.0)
        return
    if sw.variant not in r.variants(repo, models):
        r.run.record(sw.folder, f"skipped: no {sw.variant}", 0.0)
        return
    p = r.plan
    cmd = python_m(
        "loadtest",
        "sweep",
        mode="inproc",
        models=",".join(models or p.models),
        repo=repo or r.repo,
        provider=p.provider,
        variant=sw.variant,
        batch=sw.batch or p.inproc_batch,
        seq=sw.seq or p.inproc_seq,
        inproc_budget=p.inproc_budget,
        inproc_blocks=sw.blocks or p.inproc_blocks,
        repeats=p.inproc_repeats,
        out=r.out / sw.folder,
    )
    env = {"H2H_CUDA_GRAPH": str(sw.graphs).lower()}
    r.run.step(sw.folder, cmd, env=env, done=[r.out / sw.folder / results.JSON_NAME])


def peak_step(r: Round) -> None:
    """The matrix rate this device reaches (fp16, TF32, fp32): what achieved TFLOP/s is read against."""
    device = "cuda" if r.cuda else "cpu"
    cmd = python_m("torchbench.peak", device=device, n=r.plan.peak_n, out=r.out / "peak")
    r.run.step("peak", cmd, done=[r.out / "peak" / "peak.json"])


def served_step(r: Round) -> None:
    sweep_step(r, r.plan.sweeps[0])


def kernels_step(r: Round) -> None:
    """Every CUDA kernel of one run (CUPTI through torch.profiler), per model, variant and graphs
    on/off, ONNX Runtime's and PyTorch's. On the CPU there are no kernels to record."""
    if not r.cuda:
        r.run.record("kernels", "skipped: no CUDA (the profile step profiles the CPU)", 0.0)
        return
    have = [v for v in (FP32_FILE, SERVED) if v in r.variants()]
    cmd = python_m(
        "torchbench.kernels",
        repo=r.repo,
        models=",".join(r.plan.models),
        variants=",".join(have),
        torch_modes=r.plan.torch_modes,
        batch=1,
        seq=r.plan.profile_seq,
        runs=r.plan.kernel_runs,
        out=r.out / "kernels",
    )
    r.run.step("kernels", cmd, done=[r.out / "kernels" / "kernels.json"])


def cross_step(r: Round) -> None:
    """The SHA/MHA ratio past the paper grid along tokens per batch (seq 512, larger batches)."""
    for sw in r.plan.cross_sweeps:
        sweep_step(r, replace(sw, batch=r.plan.cross_batch, seq=r.plan.cross_seq))


def torch_step(r: Round) -> None:
    """The PyTorch reference on the same weights and grid (torchbench.torch_ref)."""
    p = r.plan
    cmd = python_m(
        "torchbench.torch_ref",
        repo=r.repo,
        models=",".join(p.models),
        modes=p.torch_modes,
        device="cuda" if r.cuda else "cpu",
        batch=p.inproc_batch,
        seq=p.inproc_seq,
        budget_s=p.torch_budget,
        out=r.out,
        **({} if r.cuda else {"threads": 1}),  # the rehearsal shares 2 cores
    )
    r.run.step(
        "torch", cmd, done=[r.out / f"torch-{m}" / results.JSON_NAME for m in p.torch_modes.split(",")]
    )


def small_step(r: Round) -> None:
    """The demo's shapes (random init): the served configuration in-process, then its capacity."""
    p = r.plan
    repo = r.repo if p.small_preset == p.preset else r.repo.with_name(r.repo.name + "-small")
    if p.small_preset != p.preset and not finish_export(
        r, start_export(r, "export-small", repo, p.small_preset, ("--gpu",)), repo
    ):
        return
    served = Sweep("small-served", SERVED, graphs=r.cuda, batch=p.small_batch, seq=p.small_seq)
    sweep_step(r, served, repo=repo, models=p.small_models)
    if p.small_http:
        http_steps(r, repo, p.small_models, "small-http", sweep=False, cap_seq=p.small_cap_seq)


def train_cost_step(r: Round) -> None:
    """The training step's cost of the pair (models.train_cost): eager, and on CUDA as a graph."""
    p, modes = r.plan, ["eager", "graph"] if r.cuda else ["eager"]
    cmd = python_m(
        "models.train_cost",
        preset=p.train_preset,
        batch=p.train_batch,
        seq=p.train_seq,
        device="cuda" if r.cuda else "cpu",
        modes=",".join(modes),
        budget_s=p.train_budget,
        out=r.out / "train-cost",
        **({} if r.cuda else {"threads": 1}),
    )
    folders = [r.out / "train-cost" / f"train-{m}" for m in modes]
    r.run.step("train-cost", cmd, done=[f / results.JSON_NAME for f in folders])
    for f in folders:  # models/ writes the rows only; their report is the load report's
        if not (f / "report.md").is_file() and (f / results.JSON_NAME).is_file():
            r.run.step(f"{f.name}-report", python_m("loadtest", "report", str(f)))


def other_sweeps_step(r: Round) -> None:
    for sw in r.plan.sweeps[1:]:
        sweep_step(r, sw)


def profile_step(r: Round) -> None:
    """ONNX Runtime's own profile (`loadtest profile`, operator classes, host times on CUDA)."""
    have = [v for v in (FP32_FILE, FP16_FILE, SERVED) if v in r.variants()]
    cmd = python_m(
        "loadtest",
        "profile",
        repo=r.repo,
        models=",".join(r.plan.models),
        provider=r.plan.provider,
        variant=",".join(have),
        batch=1,
        seq=r.plan.profile_seq,
        out=r.out / "profile",
    )
    r.run.step("profile", cmd, done=[r.out / "profile" / "profile.json"])


def http_step(r: Round) -> None:
    http_steps(r, r.repo, r.plan.models, "http", sweep=True, cap_seq=r.plan.cap_seq)


# The steps after the export, most telling first, so a short budget keeps what matters. A new
# measurement is one more function of a Round, added here where its priority puts it.
MEASURE: list[Step] = [
    peak_step,
    served_step,
    kernels_step,
    cross_step,
    torch_step,
    small_step,
    train_cost_step,
    other_sweeps_step,
    profile_step,
    http_step,
]


def http_steps(r: Round, repo: Path, models: list[str], folder: str, *, sweep: bool, cap_seq: str) -> None:
    """The service on the plan's provider (with `serve_variant`, or its own choice for "auto") on a
    free loopback port, the HTTP sweep (when `sweep`) and the capacity search, then SIGTERM."""
    http, start = r.out / folder, f"{folder}-start"
    wanted = [http / results.CAPACITY_JSON_NAME] + ([http / results.JSON_NAME] if sweep else [])
    if all(complete(f) for f in wanted):
        for name in ([f"{folder}-sweep"] if sweep else []) + [f"{folder}-capacity"]:
            r.run.reuse(name)
        return
    if r.run.left() < 30:
        r.run.record(folder, OUT_OF_TIME, 0.0)
        return
    env = {
        "H2H_PROVIDER": r.plan.provider,
        **({} if r.serve_variant == "auto" else {"H2H_VARIANT": r.serve_variant}),
        "H2H_LOG_LEVEL": "warning",
        "H2H_MODELS": json.dumps(models),
        "H2H_REQUIRE_ALL_MODELS": "true",
        "H2H_FRONTS": str(r.plan.fronts),
        # the engine process and its fronts, a CUDA host's default, on the CPU rehearsal too (a
        # small CPU host would serve in one process): the rehearsal runs what the GPU round runs
        "H2H_SINGLE_PROCESS": "false",
    }
    fronts = ServiceSettings(fronts=r.plan.fronts).front_count()  # what the service will start here
    t = time.monotonic()
    try:
        with processes.serving(
            processes.service_args(repo),
            ready_path="/v2/health/ready",
            log=r.run.logs / f"{start}.log",
            env=env,
            timeout=min(240.0, max(5.0, r.run.left())),
            grace=40.0,
        ) as srv:
            served = _served_variants(srv.base)
            r.run.record(
                start, "ok", time.monotonic() - t, variant=r.serve_variant, served=served, fronts=fronts
            )
            _load_steps(r, srv.base, models, folder, sweep=sweep, cap_seq=cap_seq)
    except processes.NotReady as exc:
        r.run.record(start, f"failed: {str(exc).splitlines()[0]}", time.monotonic() - t)


def _load_steps(r: Round, url: str, models: list[str], folder: str, *, sweep: bool, cap_seq: str) -> None:
    p, http = r.plan, r.out / folder
    load = dict(url=url, models=",".join(models))
    procs = dict(client_procs=p.client_procs, out=http)
    if sweep:
        grid = dict(batch=p.http_batch, seq=p.http_seq, concurrency=p.concurrency, duration=p.duration)
        cmd = python_m("loadtest", "sweep", mode="http", **load, **grid, **procs, no_report=True)
        r.run.step(f"{folder}-sweep", cmd, done=[http / results.JSON_NAME])
    cap = dict(batch=p.cap_batch, seq=cap_seq, slo_p99_ms=50, probe_duration=p.probe_duration)
    cmd = python_m("loadtest", "capacity", **load, **cap, max_probes=p.max_probes, **procs)
    r.run.step(f"{folder}-capacity", cmd, done=[http / results.CAPACITY_JSON_NAME])
    if not (http / "report.md").is_file() and (http / results.JSON_NAME).is_file():
        r.run.step(f"{folder}-report", python_m("loadtest", "report", str(http)))


def _served_variants(url: str) -> dict[str, Any]:
    """Model -> the variant the service chose to serve ({} when it cannot be asked)."""
    try:
        return {m["name"]: m.get("variant") for m in list_models(url)}
    except Exception as exc:  # noqa: BLE001 - the record says why, the steps go on
        return {"error": f"{type(exc).__name__}: {exc}"}


def write_outputs(r: Round, facts: dict[str, Any], benchmarks: Path | None) -> None:
    """report.md (with its crossover plot) and results.json in the report folder; the summary
    appended to `benchmarks`."""
    facts.update(steps=r.run.steps, elapsed_s=round(time.monotonic() - r.run.t0, 1))
    facts.update(machine=results.machine(nvml.gpu_names()), versions=results.versions())
    s = summary.collect(r.out, {k: v for k, v in labels(r.plan).items() if (r.out / k).is_dir()})
    write_json(r.out / "results.json", {**facts, **s.as_json()})
    write_text(r.out / "report.md", page.report_md(facts, s, page.write_plot(s, r.out)))
    if benchmarks is not None:
        # the link points where the folder is committed (docs/gpu/<gpu-name>/), also when the run
        # wrote it elsewhere first (results/gpu/ on a device host, kept between calls there)
        try:
            rel = os.path.relpath(ROOT / "docs" / "gpu" / r.out.name, benchmarks.resolve().parent)
        except ValueError:
            rel = str(r.out)
        old = benchmarks.read_text(encoding="utf-8") if benchmarks.is_file() else "# Benchmarks\n"
        write_text(benchmarks, with_block(old, page.benchmarks_block(facts, s, rel)))


def with_block(text: str, block: str) -> str:
    """`text` with `block` appended, or in place of the block a previous run of the same report
    (same heading: GPU and date) appended, so finishing a report with a rerun does not repeat it."""
    heading = block.strip("\n").splitlines()[0]
    at = text.find("\n" + heading)
    if at >= 0:
        nxt = text.find("\n## ", at + 1)
        text = text[:at] + (text[nxt:] if nxt >= 0 else "")
    return text.rstrip("\n") + "\n" + block


def _earlier(out: Path) -> dict[str, Any]:
    """The results.json an earlier run of this report left in `out` ({} if none)."""
    try:
        data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _gpu_tests(run: Run, junit: Path) -> None:
    """`pytest -m gpu`, its results in `junit`; reused when a rerun finds them."""
    if junit.is_file():
        run.reuse("gpu-tests")
        return
    run.step(
        "gpu-tests",
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
    )


def main(a: GpuReportSettings) -> int:
    """The round as the settings say; the exit code of `steps.exit_code`."""
    from loadtest.gpu.preflight import preflight  # onnx and the CUDA probe: only a real round needs them

    plan = REHEARSAL if a.rehearse_cpu else Plan()
    out_root = a.out_root or ("results/gpu-rehearsal" if a.rehearse_cpu else "docs/gpu")
    bench = a.benchmarks if a.benchmarks is not None else ("" if a.rehearse_cpu else "docs/benchmarks.md")
    gpu, providers = preflight(a.rehearse_cpu)
    out, logs = ROOT / out_root / summary.slug(gpu["name"]), ROOT / a.logs
    if a.fresh:
        shutil.rmtree(out, ignore_errors=True)
        (logs / "gpu-tests.xml").unlink(missing_ok=True)
    earlier = _earlier(out)
    out.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    run = Run(a.budget_s, logs, earlier={s["name"]: s for s in earlier.get("steps", [])})
    created = earlier.get("created") or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    print(f"gpu-report: {gpu['name']}, budget {a.budget_s:.0f} s, writing {out}", file=sys.stderr)
    r = Round(run, ROOT / a.repo, out, plan, a.serve_variant)
    job = start_export(r, "export", r.repo, plan.preset, plan.export_extra)
    if not (a.skip_tests or a.rehearse_cpu):
        _gpu_tests(run, logs / "gpu-tests.xml")
    if finish_export(r, job, r.repo):
        for step in MEASURE:
            step(r)
    facts = {"gpu": gpu, "providers": providers, "created": created, "plan": _plan_facts(plan)}
    write_outputs(r, facts, (ROOT / bench) if bench else None)
    print(f"wrote {out / 'report.md'}", file=sys.stderr)
    return exit_code(run.steps)


def _plan_facts(plan: Plan) -> dict[str, Any]:
    return asdict(plan) | {"models": plan.models, "small_models": plan.small_models}
