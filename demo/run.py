"""`make demo`: train MHA and SHA, export both, serve them, load-test, print which model to serve.

    python -m demo [--preset small] [--runs runs] [--repo model_repository]
                   [--results results] [--force] [--skip-loadtest]

Every step is the project's own CLI or API, run the way a user would run it, so the demo
is also an end-to-end check: a completed training run in `runs/` is reused (`--force`, or
`make demo FORCE=1`, retrains), the service is a real `python -m service` subprocess on a
free loopback port, and the load test is `python -m loadtest sweep` against it, followed by
`python -m loadtest capacity` for the highest request rate each model serves within the latency
SLO, in interleaved rounds beside the same service started with --null-engine (the ceiling the
service itself sets). The service gets SIGTERM at the end (or on any failure) and must drain and
exit 0. The demo ends with the answer: test accuracy, p50 at batch 1 and capacity side by side
with their ranges, and one sentence (loadtest.report.decide) naming the model to serve and the
signal that decided, or saying that nothing differs beyond noise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.cli import fail, settings_from, settings_parser
from contract.manifest import FP32_FILE, load_manifest
from contract.results import CapacityResults, SweepResults, SweepRow, load, load_capacity
from export.api import export_run
from loadtest import processes
from loadtest.report.analysis import is_lone, max_throughput
from loadtest.report.markdown import verdict, which_model_answer
from models.data import WordNetMissingError
from models.settings import TrainSettings
from models.train import train

ROOT = Path(__file__).resolve().parents[1]  # the checkout: the demo runs the CLIs as a user would there

ARCHS = ("mha", "sha")
COMPARE_TEXT = ["a large carnivorous feline of Africa and Asia", "move fast by using one's feet"]


class DemoSettings(BaseSettings):
    """The demo's one settings object (env vars H2H_DEMO_*, CLI flags override)."""

    model_config = SettingsConfigDict(env_prefix="H2H_DEMO_")

    preset: Literal["tiny", "small", "base"] = Field(default="small", description="model size to train")
    runs: Path = Field(default=Path("runs"), description="training run folders")
    repo: Path = Field(default=Path("model_repository"), description="model repository the exports go to")
    results: Path = Field(default=Path("results"), description="load test results and the service log")
    force: bool = Field(default=False, description="retrain even when a completed run exists")
    epochs: int = Field(default=2, ge=1, description="training epochs")
    wordnet_dir: Path | None = Field(
        default=None, description="WordNet dict folder (default /usr/share/wordnet)"
    )
    skip_loadtest: bool = Field(default=False, description="stop after serving and comparing the two")
    loadtest_preset: Literal["default", "tiny"] = Field(
        default="default", description="loadtest grid: default (about a minute) or tiny (seconds, tests)"
    )
    ready_timeout_s: float = Field(
        default=120.0, gt=0, description="seconds the service may take to be ready"
    )
    slo_p99_ms: float = Field(
        default=50.0, gt=0, description="latency SLO of the which-model answer (p99, ms)"
    )
    capacity_seq: str = Field(
        default="16,64", description="sequence lengths (at batch 1) of the capacity search"
    )


# the capacity search per --loadtest-preset: interleaved rounds of half-second windows (each rate
# repeated until two windows agree, at most 3), each model's and the null-engine service's, 3-4
# rounds (stopping at 3 when the last two agree within 10%): about 2-3 minutes of the demo on the
# CPU box (2 shapes x 3 targets)
CAPACITY_PROBES = {
    "default": (
        *("--probe-duration", "0.5", "--max-probes", "6", "--tolerance", "0.1", "--windows", "3"),
        *("--min-rounds", "3", "--max-rounds", "4", "--stability", "0.1", "--p50-window", "0.3"),
    ),
    "tiny": (
        *("--probe-duration", "0.3", "--max-probes", "3", "--tolerance", "0.5", "--windows", "2"),
        *("--min-rounds", "2", "--max-rounds", "2", "--p50-window", "0.2"),
    ),
}
# in-process blocks per point, so the model cost has a range the verdict can judge noise by
INPROC_BLOCKS = {"default": "3", "tiny": "2"}


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def completed_metrics(run_dir: Path) -> dict[str, Any] | None:
    """metrics.json of a run that finished (the trainer writes complete=true last)."""
    try:
        m = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return m if m.get("complete") else None


def train_both(s: DemoSettings) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for arch in ARCHS:
        ts = TrainSettings(
            arch=arch,
            preset=s.preset,
            out=s.runs,
            epochs=s.epochs,
            **({"wordnet_dir": s.wordnet_dir} if s.wordnet_dir else {}),
        )
        run_dir = s.runs / ts.run_name()
        metrics = None if s.force else completed_metrics(run_dir)
        if metrics is not None:
            print(
                f"{arch}: reusing {run_dir} (test accuracy {metrics['test_accuracy']:.4f}; --force retrains)"
            )
        else:
            metrics = train(ts)
        out[arch] = {**metrics, "run_dir": run_dir}
    return out


def export_both(s: DemoSettings, runs: dict[str, dict[str, Any]]) -> dict[str, str]:
    names = {}
    for arch, m in runs.items():
        t0 = time.perf_counter()
        path = export_run(m["run_dir"], s.repo)
        parity = load_manifest(path).variants[FP32_FILE].parity.max_abs_logits
        print(
            f"{arch}: exported {path} in {time.perf_counter() - t0:.1f}s (parity max |Δlogits| {parity:.1e})"
        )
        names[arch] = path.name
    return names


def show_compare(url: str) -> None:
    r = httpx.post(f"{url}/v1/compare", json={"texts": COMPARE_TEXT, "top_k": 2}, timeout=30)
    r.raise_for_status()
    print(f"POST /v1/compare {json.dumps({'texts': COMPARE_TEXT})}")
    print(json.dumps(r.json(), indent=2)[:4000])


def run_loadtest(command: str, *args: str) -> bool:
    """`python -m loadtest COMMAND ARGS` as a user would type it; False (said on stderr) on failure."""
    cmd = [sys.executable, "-m", "loadtest", command, *args]
    print("$ python " + " ".join(cmd[1:]), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc != 0:
        print(f"loadtest {command} exited with {rc}", file=sys.stderr)
    return rc == 0


def loadtest(s: DemoSettings, url: str, names: dict[str, str]) -> SweepResults | None:
    # name the two models: the repository may hold others (e.g. the random-init paper pair)
    models = ",".join(names.values())
    args = ["--preset", s.loadtest_preset, "--mode", "both", "--models", models, "--repo", str(s.repo)]
    args += ["--inproc-blocks", INPROC_BLOCKS[s.loadtest_preset]]
    if not run_loadtest("sweep", *args, "--url", url, "--out", str(s.results)):
        return None
    return load(s.results)


def capacity(s: DemoSettings, url: str, names: dict[str, str]) -> CapacityResults | None:
    """The SLO capacity search on the trained pair at batch 1, beside the same service started
    with --null-engine (no model runs: the ceiling the service itself sets), searched in the same
    interleaved rounds. It rewrites the report with the which-model section and the plot."""
    args = ["--models", ",".join(names.values()), "--batch", "1", "--seq", s.capacity_seq]
    args += ["--slo-p99-ms", f"{s.slo_p99_ms:g}", *CAPACITY_PROBES[s.loadtest_preset]]
    log = s.results / "service-null-engine.log"
    null = processes.service_args(s.repo, "--models", *names.values(), "--null-engine")
    with processes.serving(
        null, ready_path="/v2/health/ready", log=log, timeout=s.ready_timeout_s
    ) as ceiling:
        print(f"the service's own ceiling: the same service with --null-engine at {ceiling.base} (log {log})")
        ok = run_loadtest(
            "capacity", *args, "--url", url, "--ceiling-url", ceiling.base, "--out", str(s.results)
        )
    return load_capacity(s.results) if ok else None


def show_answer(s: DemoSettings, results: SweepResults | None, cap: CapacityResults) -> None:
    """The demo's last words: the which-model table and the one sentence naming the model to serve."""
    results = results or SweepResults(points=[])
    manifests = {**cap.meta.manifests, **results.meta.manifests}
    table, sentence = which_model_answer(cap, results.points, manifests)
    if not table:
        return
    banner(f"Which model to serve (p99 <= {s.slo_p99_ms:g} ms)")
    print(table)
    print()
    print(sentence)


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def comparison(runs: dict[str, dict[str, Any]], names: dict[str, str], results: SweepResults | None) -> str:
    """One Markdown table: training side (params, accuracy, time) and serving side (latency)."""
    points = results.points if results else []
    header = ["", "layers x heads", "params", "test acc, this model", "train time"]
    inproc = [p for p in points if p.mode == "inproc" and p.p50_ms is not None]
    http1 = [p for p in points if is_lone(p) and p.p50_ms]
    small = min(((p.batch, p.seq) for p in inproc), default=None)
    large = max(((p.batch * p.seq, p.batch, p.seq) for p in inproc), default=None)
    hsmall = min(((p.batch, p.seq) for p in http1), default=None)
    if small:
        header.append(f"in-process p50 ms b{small[0]} s{small[1]}")
    if large:
        header.append(f"in-process p50 ms b{large[1]} s{large[2]}")
    if hsmall:
        header.append(f"HTTP p50 ms b{hsmall[0]} s{hsmall[1]}")
    tput = max_throughput(points, "http") if points else {}
    if tput:
        header.append("HTTP max rows/s")

    def at(rows: list[SweepRow], model: str, b: int, q: int) -> float | None:
        return next((p.p50_ms for p in rows if (p.model, p.batch, p.seq) == (model, b, q)), None)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arch, m in runs.items():
        name = names.get(arch, "")
        cells = [
            f"{arch.upper()} ({m['norm']})",
            f"{m['layers']}L-{m['heads']}H",
            f"{m['params']:,}",
            f"{m['test_accuracy']:.4f}",
            f"{m['train_time_s']:.0f}s ({m.get('device', '?')})",
        ]
        if small:
            cells.append(_ms(at(inproc, name, *small)))
        if large:
            cells.append(_ms(at(inproc, name, large[1], large[2])))
        if hsmall:
            cells.append(_ms(at(http1, name, *hsmall)))
        if tput:
            cells.append(f"{tput.get(name, 0):,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_TITLE = __doc__.splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    s = settings_from(DemoSettings, settings_parser(DemoSettings, "python -m demo", _TITLE).parse_args(argv))
    os.chdir(ROOT)

    banner(f"1/4 train MHA and SHA ({s.preset}) -> {s.runs}/")
    try:
        runs = train_both(s)
    except WordNetMissingError as exc:
        fail(str(exc))

    banner(f"2/4 export to ONNX with a parity check -> {s.repo}/")
    names = export_both(s, runs)

    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    log = s.results / "service.log"
    banner(f"3/4 serve {', '.join(names.values())} at {url} (log {log})")
    args = processes.service_args(s.repo, "--models", *names.values())
    ready, results, cap = "/v2/health/ready", None, None
    try:
        with processes.serving(
            args, ready_path=ready, port=port, log=log, timeout=s.ready_timeout_s, grace=60.0
        ) as srv:
            show_compare(url)
            if not s.skip_loadtest:
                banner(f"4/4 load test (in-process and HTTP), then capacity within the SLO -> {s.results}/")
                results = loadtest(s, url, names)
                cap = capacity(s, url, names)
    except processes.NotReady as exc:
        fail(f"{str(exc).splitlines()[0]}; see {log}")
    print(f"service stopped on SIGTERM, exit code {srv.returncode}")

    banner("MHA vs SHA")
    print(comparison(runs, names, results))
    if results is not None:
        print()
        print(verdict(results.points))
        plots = sorted(p.name for p in s.results.glob("*.png"))
        print(f"\nreport: {s.results / 'report.md'}\nplots in {s.results}/: {', '.join(plots)}")
    if cap is not None:
        show_answer(s, results, cap)
    return 0 if srv.returncode == 0 else 1
