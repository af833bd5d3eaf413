"""Training-step cost of the MHA/SHA pair as batch and sequence grow: forward, backward and the
optimizer step, timed per shape and reported like the inference sweep.

    python -m models.train_cost [--preset small] [--batch 1,8,32,64] [--seq 16,32,64]
        [--device cpu|cuda] [--modes eager,graph] [--budget-s 3] [--threads 2] [--out results/train-cost]

One step is what models.train runs per batch: forward, cross-entropy, backward, gradient clipping
and the fused AdamW step (the learning-rate scheduler, a Python-side multiply, is left out), on
random full-length token ids of the preset's MHA model and its SHA twin (Admin, random weights:
the cost does not depend on them). Per mode, OUT/train-<mode>/ gets results.json and .csv in the
in-process sweep's row format (a row per model and shape, p50 = the median step, tokens/s =
batch x seq / p50), which `python -m loadtest report OUT/train-<mode>` turns into the load report
(SHA/MHA ratio table and heatmap; the GPU round does it after this step). The rows are
contract.results', so this module needs nothing of the load tester.
Modes: eager (CPU or CUDA) and, on CUDA, graph: the whole step captured once per shape as a CUDA
graph (AdamW capturable) and replayed; a shape torch cannot capture is recorded in the notes.
Exit codes: 0 done; 2 bad flags (one line).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract import results
from contract.cli import fail, settings_from, settings_parser
from contract.flags import BatchSizes, ModelPreset, TorchThreads
from contract.results import summarize
from models.config import from_preset
from models.data import LEXNAMES
from models.encoder import Encoder, build
from models.settings import TrainSettings
from models.train import make_optimizer

MODES = {"eager": "train step, torch eager fp32", "graph": "train step, torch fp32 + CUDA graph"}
WARMUP, MIN_REPEATS, REPEATS = 2, 3, 1000


class TrainCostSettings(BaseSettings):
    """The sweep's options, one field per flag (flags and help are generated from it; each flag
    can also come from H2H_TRAIN_COST_<FLAG>, the command line winning)."""

    model_config = SettingsConfigDict(env_prefix="H2H_TRAIN_COST_", extra="forbid")

    preset: ModelPreset = "small"
    batch: BatchSizes = "1,8,32,64"
    seq: str = Field(default="16,32,64", description="comma list of sequence lengths (tokens)")
    device: Literal["cpu", "cuda"] = Field(default="cpu", description="where the steps run")
    modes: str | None = Field(
        default=None, description="comma list of eager, graph (default cpu: eager; cuda: both)"
    )
    budget_s: float = Field(default=3.0, gt=0, description="seconds of timed steps per point")
    threads: TorchThreads = 0
    vocab_size: int = Field(
        default=25_859,
        ge=16,
        description="vocabulary (default: WordNet's at the default training settings; the embedding's "
        "gradient and AdamW update are part of every step)",
    )
    clock: Literal["wall", "cpu"] = Field(
        default="wall",
        description="wall: seconds per step; cpu: this process's CPU seconds per step (CPU only; use "
        "--threads 1 so idle threads' spinning is not counted), steadier on a shared machine",
    )
    out: Path = Field(default=Path("results/train-cost"), description="one folder per mode under OUT")

    @field_validator("batch", "seq")
    @classmethod
    def _positive_ints(cls, v: str) -> str:
        try:
            got = [int(x) for x in v.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"must be a comma list of whole numbers, got {v!r}") from None
        if not got or min(got) < 1:
            raise ValueError(f"must list numbers of at least 1, got {v!r}")
        return v

    def ints(self, name: str) -> list[int]:
        return [int(x) for x in getattr(self, name).split(",") if x.strip()]

    def mode_list(self) -> list[str]:
        """The modes to run; a bad name or graph off CUDA is an error for the user (exit 2)."""
        modes = [
            m.strip()
            for m in (self.modes or ("eager,graph" if self.device == "cuda" else "eager")).split(",")
        ]
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            fail(f"--modes: unknown {', '.join(bad) or 'empty list'}; choose from {', '.join(MODES)}")
        if "graph" in modes and self.device != "cuda":
            fail("--modes graph needs --device cuda (CUDA graphs)")
        if self.clock == "cpu" and self.device != "cpu":
            fail("--clock cpu times CPU work: it needs --device cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            fail("--device cuda: PyTorch sees no CUDA device")
        return modes


def pair(s: TrainCostSettings) -> dict[str, Encoder]:
    """The preset's MHA model and its SHA twin, seeded, as models.train builds them."""
    out = {}
    for arch in ("mha", "sha"):
        torch.manual_seed(0)
        cfg = from_preset(s.preset, arch, vocab_size=s.vocab_size, num_labels=len(LEXNAMES), norm="admin")
        out[f"{arch}-{s.preset}"] = build(cfg)
    return out


def step_fn(model: Encoder, batch: int, seq: int, device: str, graph: bool) -> Callable[[], None]:
    """One training step on fixed random inputs; on CUDA it returns once the GPU is done.

    With `graph`, the step is captured once (after warm-up steps on a side stream, as torch's
    whole-network capture recipe asks) and each call replays it.
    """
    settings = TrainSettings()
    opt, _ = make_optimizer(model, settings, total_steps=10**6, device=torch.device(device), capturable=graph)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, model.cfg.vocab_size, (batch, seq), generator=g).to(device)
    mask = torch.ones_like(ids)
    y = torch.randint(0, model.cfg.num_labels, (batch,), generator=g).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step() -> None:
        logits, _ = model(ids, mask)
        torch.nn.functional.cross_entropy(logits, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_norm)
        opt.step()
        opt.zero_grad(set_to_none=not graph)  # a graph keeps its gradient buffers

    if not graph:
        return lambda: (step(), sync())  # type: ignore[func-returns-value]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP + 1):
            step()
    torch.cuda.current_stream().wait_stream(side)
    cuda_graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(cuda_graph):
        step()
    return lambda: (cuda_graph.replay(), sync())  # type: ignore[func-returns-value]


def time_steps(run: Callable[[], None], budget_s: float, clock: str) -> list[float]:
    """Seconds of each timed step after WARMUP untimed ones: at least MIN_REPEATS, then until
    `budget_s` of wall time is spent. `clock` cpu counts this process's CPU seconds instead of
    wall seconds (a machine shared with other jobs inflates wall time, not the work done)."""
    tick = time.process_time if clock == "cpu" else time.perf_counter
    for _ in range(WARMUP):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < REPEATS:
        t0 = tick()
        run()
        times.append(tick() - t0)
        if len(times) >= MIN_REPEATS and time.perf_counter() - start >= budget_s:
            break
    return times


def row(
    name: str, model: Encoder, variant: str, provider: str, shape: tuple[int, int], seconds: list[float]
) -> dict:
    """A row in the in-process sweep's format (contract.results.SweepRow): p50 is the median step."""
    st = summarize(seconds)
    batch, seq = shape
    p50_s = st["p50_ms"] / 1e3  # type: ignore[operator]
    cfg = model.cfg
    return {
        "mode": "inproc",
        "load": "inproc",
        "model": name,
        "arch": cfg.arch,
        "layers": cfg.layers,
        "heads": cfg.heads,
        "batch": batch,
        "seq": seq,
        "concurrency": 1,
        "rate": None,
        "provider": provider,
        "variant": variant,
        "requests": st.pop("count"),
        "errors": 0,
        **st,
        "rps": 1 / p50_s,
        "tokens_per_s": batch * seq / p50_s,
        "window_s": sum(seconds),
        "note": "training step: forward, backward, clip, AdamW",
    }


def _point(s: TrainCostSettings, mode: str, name: str, model: Encoder, shape: tuple[int, int]) -> dict | str:
    """One model at one shape: its row, or why there is none (said in the notes, not hidden)."""
    b, q = shape
    if q > model.cfg.max_len:
        return f"{name}: seq {q} skipped (longer than max_len {model.cfg.max_len})"
    try:
        secs = time_steps(step_fn(model, b, q, s.device, mode == "graph"), s.budget_s, s.clock)
    except RuntimeError as exc:  # a capture torch refuses
        return f"{name} b={b} s={q}: {mode} failed: {str(exc).splitlines()[0]}"
    variant = MODES[mode] + (", CPU seconds" if s.clock == "cpu" else "")
    return row(name, model, variant, f"torch-{s.device}", shape, secs)


def sweep_mode(s: TrainCostSettings, mode: str, meta: dict[str, Any], t0: float) -> Path:
    """Every shape, MHA then SHA back to back (so their ratio is measured side by side), the
    results written after each point; returns their folder."""
    folder, rows, notes = s.out / f"train-{mode}", [], list(meta["notes"])
    models = {name: m.to(s.device).train() for name, m in pair(s).items()}
    for shape in [(b, q) for b in s.ints("batch") for q in s.ints("seq")]:
        for name, model in models.items():
            got = _point(s, mode, name, model, shape)
            if isinstance(got, str):
                notes.append(got)
                print(got, file=sys.stderr)
                continue
            rows.append(got)
            print(
                f"{MODES[mode]} {name} b={shape[0]} s={shape[1]}: p50 {got['p50_ms']:.2f} ms", file=sys.stderr
            )
            results.write(folder, {**meta, "notes": notes}, rows)
    results.write(folder, {**meta, "notes": notes, "elapsed_s": round(time.perf_counter() - t0, 1)}, rows)
    return folder


def _gpu_names() -> list[str]:
    """The CUDA devices torch sees, for the results' machine record."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [torch.cuda.get_device_name(i) for i in range(count)]


_TITLE = __doc__.splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    s = settings_from(
        TrainCostSettings,
        settings_parser(TrainCostSettings, "python -m models.train_cost", _TITLE).parse_args(argv),
    )
    modes = s.mode_list()
    if s.threads:
        torch.set_num_threads(s.threads)
    meta = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m models.train_cost", *(argv if argv is not None else sys.argv[1:])]),
        "machine": results.machine(_gpu_names()),
        "versions": {**results.versions(), "torch": torch.__version__},
        "threads": torch.get_num_threads(),
        "providers": {"inproc": {f"{a}-{s.preset}": f"torch-{s.device}" for a in ("mha", "sha")}},
        "notes": [
            f"training step (forward, backward, clip, fused AdamW), preset {s.preset}, random weights; "
            + (
                "p50 = median CPU seconds per step of this process"
                if s.clock == "cpu"
                else "p50 = median step"
            )
        ],
    }
    t0 = time.perf_counter()
    for mode in modes:
        folder = sweep_mode(s, mode, meta, t0)
        print(
            f"wrote {folder / results.JSON_NAME}; its report: python -m loadtest report {folder}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
