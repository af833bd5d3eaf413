"""What the GPU round measures: models, grids and durations on CUDA, or the CPU rehearsal's
seconds-long equivalents. Each in-process sweep is one `Sweep` (result folder, variant file,
CUDA graphs or not, its grid); the round runs them in the order `Plan.sweeps` lists them."""

from __future__ import annotations

from dataclasses import dataclass, replace

from contract.manifest import FP16_FILE, FP32_FILE, GPU_FILE, OPT_FILE

EXPORT_FILES = {"--optimize": OPT_FILE, "--fp16": FP16_FILE, "--gpu": GPU_FILE}
TORCH_LABELS = {
    "eager-fp32": "torch eager fp32",
    "eager-fp16": "torch eager fp16",
    "graph-fp16": "torch fp16 + CUDA graph",
    "compile-fp16": "torch.compile fp16 (reduce-overhead)",
}
PEAK_JSON, KERNELS_JSON = "peak.json", "kernels.json"  # written by torchbench.peak and .kernels
SERVED = GPU_FILE  # what the service runs on CUDA once proven at start
TRAIN_MODES = {
    "eager": "train step, eager",
    "graph": "train step, CUDA graph",
}  # models.train_cost


@dataclass(frozen=True)
class Sweep:
    """One in-process sweep: `folder` under the report, `variant` file, CUDA graphs replayed or not,
    its grid (None: the plan's) and its blocks of runs per point (None: the plan's)."""

    folder: str
    variant: str
    graphs: bool = False
    batch: str | None = None
    seq: str | None = None
    blocks: str | None = None

    @property
    def label(self) -> str:
        return self.variant + (" + CUDA graphs" if self.graphs else "")


# the served configuration first, then the other ways of running the same weights
SWEEPS = (
    Sweep("inproc-served", SERVED, graphs=True),
    Sweep("inproc-gpu", SERVED),
    Sweep("inproc-fp32", FP32_FILE),
    Sweep("inproc-fp16-graphs", FP16_FILE, graphs=True),
    Sweep("inproc-fp16", FP16_FILE),
    Sweep("inproc-opt", OPT_FILE),
)


@dataclass(frozen=True)
class Plan:
    """The GPU defaults; REHEARSAL below is the CPU rehearsal's."""

    preset: str = "base"
    provider: str = "cuda"
    inproc_batch: str = "1,4,16,64"
    inproc_seq: str = "32,128,512"
    inproc_budget: str = "0.6"  # seconds per point, split into `inproc_blocks` blocks of runs
    inproc_blocks: str = "5"
    inproc_repeats: str = "2000"  # most timed runs per point: the budget, not this, ends a fast point
    torch_budget: str = "0.3"
    # where the SHA/MHA ratio goes as tokens per batch grow: seq 512, batch past the paper grid
    cross_batch: str = "128,256,512"
    cross_seq: str = "512"
    http_batch: str = "1,8"
    http_seq: str = "32,128"
    concurrency: str = "1,16"
    duration: str = "2"
    cap_batch: str = "1"
    cap_seq: str = "32"
    probe_duration: str = "2"
    max_probes: str = "5"
    client_procs: str = "4"
    fronts: int = 0  # the service's HTTP front processes (0: its own choice, one per two cores)
    # the fused fp16 variant (what the service runs) beside fp32; fp16 error accumulates over the
    # 144-layer model's 288 residual sublayers, hence the wider tolerance (docs/benchmarks.md)
    export_extra: tuple[str, ...] = ("--fp16-tolerance", "0.1", "--gpu")
    profile_seq: str = "128"
    torch_modes: str = "eager-fp16,graph-fp16"
    peak_n: int = 8192  # matrix side of the matmul probe
    kernel_runs: int = 20
    # the demo's shapes, random init: the served configuration's per-run time and HTTP capacity
    small_preset: str = "small"
    small_batch: str = "1,4,16"
    small_seq: str = "16,64"
    small_cap_seq: str = "16"
    small_http: bool = True  # the CPU rehearsal serves one pair only (the same steps)
    # the training step's cost (models.train_cost) of the small pair, eager and as a CUDA graph
    train_preset: str = "small"
    train_batch: str = "1,8,32,64"
    train_seq: str = "16,64"
    train_budget: str = "0.5"
    sweeps: tuple[Sweep, ...] = SWEEPS
    # the same settings as the paper-grid sweeps of these variants (their rows continue those), and
    # two blocks of runs per point: large batches are GPU-bound and steady
    cross_sweeps: tuple[Sweep, ...] = (
        Sweep("cross-fp32", FP32_FILE, blocks="2"),
        Sweep("cross-gpu", SERVED, blocks="2"),
    )

    @property
    def models(self) -> list[str]:
        return [f"mha-{self.preset}-random", f"sha-{self.preset}-random"]

    @property
    def small_models(self) -> list[str]:
        return [f"mha-{self.small_preset}-random", f"sha-{self.small_preset}-random"]


# the CPU rehearsal: the tiny preset on small grids, with seconds-long points and probes
_CPU_GRIDS = dict(
    inproc_batch="1,4",
    inproc_seq="16,32",
    cross_batch="8",
    cross_seq="32",
    http_batch="1,4",
    http_seq="16",
    cap_seq="16",
    small_batch="1",
    small_seq="16",
)
_CPU_TIMES = dict(
    inproc_budget="0.1", inproc_blocks="2", duration="0.3", probe_duration="0.3", max_probes="3"
)
_CPU_RUNS = dict(
    profile_seq="16",
    torch_modes="eager-fp32",
    peak_n=256,
    kernel_runs=3,
    small_preset="tiny",
    small_http=False,
)
REHEARSAL = replace(
    Plan(),
    preset="tiny",
    provider="cpu",
    concurrency="1,4",
    client_procs="2",
    export_extra=("--optimize", "--gpu"),
    **_CPU_GRIDS,
    **_CPU_TIMES,
    **_CPU_RUNS,
)


def labels(plan: Plan) -> dict[str, str]:
    """Result folder -> the label its rows are compared under (ONNX Runtime's and PyTorch's)."""
    return {
        **{s.folder: s.label for s in (*plan.sweeps, *plan.cross_sweeps)},
        **{f"torch-{mode}": label for mode, label in TORCH_LABELS.items()},
        "small-served": SERVED + (" + CUDA graphs" if plan.provider == "cuda" else ""),
        **{f"train-cost/train-{m}": label for m, label in TRAIN_MODES.items()},
    }
