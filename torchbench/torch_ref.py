"""The PyTorch reference: each model of a repository run in PyTorch in-process, timed per shape
like the in-process ONNX Runtime sweep, so a report can say whether ONNX Runtime is the fast way
to run it.

    python -m torchbench.torch_ref --repo DIR [--models a,b] [--device cpu|cuda] [--modes ...]
        [--batch 1,4] [--seq 16,32] [--budget-s 0.4] [--out results/torch]

The weights are the export's own: a trained model's checkpoint (its manifest's `source_run`), or
for a random-init export the same construction the export used (preset shape, `--seed`, default 0
as export's). Each model is checked against its model.onnx on the CPU first (max |Δlogits| in the
rows' meta), so a reference that is not the same function is said, not hidden.
Modes (one results folder each, `torch-<mode>/`, rows in the in-process sweep's format):
eager-fp32 (CPU or CUDA), eager-fp16, graph-fp16 (each shape captured once as a CUDA graph and
replayed) and compile-fp16 (`torch.compile(mode="reduce-overhead")`, slow to compile) on CUDA.
Exit codes: 0 done; 2 bad flags or a model that cannot be rebuilt (one line).
"""

from __future__ import annotations

import copy
import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
import torch
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract import results, tensors
from contract.cli import fail, settings_from, settings_parser
from contract.flags import BatchSizes, ModelFolders, ModelRepository, TorchThreads
from contract.manifest import FP32_FILE, load_manifest
from contract.results import summarize
from export.api import random_config, synthetic_tokenizer
from loadtest.models import PlanError, repo_models, resolve
from loadtest.sweep.inproc import time_runs
from models.checkpoint import load_run, random_run
from models.config import PRESETS
from service.runtime import nvml

LABELS = {
    "eager-fp32": "torch eager fp32",
    "eager-fp16": "torch eager fp16",
    "graph-fp16": "torch fp16 + CUDA graph",
    "compile-fp16": "torch.compile fp16 (reduce-overhead)",
}
CUDA_ONLY = {"eager-fp16", "graph-fp16", "compile-fp16"}
DEFAULT_MODES = {"cpu": "eager-fp32", "cuda": "eager-fp16,graph-fp16"}
WARMUP, MIN_REPEATS, REPEATS = 3, 3, 200


class RebuildError(ValueError):
    """The repository's model cannot be rebuilt in PyTorch (one line for the user)."""


def reference_model(model_dir: Path, seed: int) -> tuple[torch.nn.Module, str]:
    """The export's model in PyTorch (eval, CPU, fp32) and how it was obtained."""
    m = load_manifest(model_dir)
    if m.source_run and Path(m.source_run).is_dir():
        return load_run(m.source_run).model.eval(), f"checkpoint {m.source_run}"
    if not m.random_init:
        raise RebuildError(f"{model_dir.name}: its training run {m.source_run!r} is not on this machine")
    keys = ("layers", "heads", "d_model", "head_dim", "ffn_dim", "norm")
    fits = [
        (name, cfg)
        for name in PRESETS
        if all(
            getattr(cfg := random_config(name, m.arch, vocab_size=m.vocab_size), k) == getattr(m, k)
            for k in keys
        )
    ]
    if not fits:
        raise RebuildError(
            f"{model_dir.name}: random-init with a shape no preset has ({m.layers}L-{m.heads}H)"
        )
    preset, cfg = fits[0]
    run = random_run(cfg, synthetic_tokenizer(m.vocab_size, cfg.max_len), list(m.labels), seed=seed)
    return run.model.eval(), f"random-init preset {preset}, seed {seed} (the export's construction)"


def onnx_delta(model: torch.nn.Module, model_dir: Path, batch: int = 2, seq: int = 8) -> float:
    """max |Δlogits| between `model` (fp32, CPU) and the folder's model.onnx on ONNX Runtime's CPU."""
    rng = np.random.default_rng(0)
    ids = rng.integers(2, model.cfg.vocab_size, size=(batch, seq), dtype=np.int64)
    mask = np.ones_like(ids)
    sess = ort.InferenceSession(str(model_dir / FP32_FILE), providers=["CPUExecutionProvider"])
    got = sess.run([tensors.LOGITS], {tensors.INPUT_IDS: ids, tensors.ATTENTION_MASK: mask})[0]
    with torch.inference_mode():
        want = model(torch.from_numpy(ids), torch.from_numpy(mask))[0].numpy()
    return float(np.abs(got - want).max())


def runner(model: torch.nn.Module, mode: str, ids: torch.Tensor, mask: torch.Tensor) -> Callable[[], None]:
    """One call of `model` on fixed inputs as `mode` runs it; on CUDA it returns when the GPU is done."""
    sync = torch.cuda.synchronize if ids.is_cuda else (lambda: None)
    if mode == "graph-fp16":
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                model(ids, mask)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(ids, mask)
        return lambda: (graph.replay(), sync())  # type: ignore[func-returns-value]
    return lambda: (model(ids, mask), sync())  # type: ignore[func-returns-value]


def prepared(model: torch.nn.Module, mode: str, device: str) -> torch.nn.Module:
    """The model on `device` in the mode's precision (a copy: the fp32 CPU model stays as it is)."""
    m = copy.deepcopy(model).to(device)
    if mode.endswith("fp16"):
        m = m.half()
    if mode == "compile-fp16":
        m = torch.compile(m, mode="reduce-overhead", dynamic=False)
    return m


def time_mode(
    model: torch.nn.Module, mode: str, device: str, batch: int, seq: int, budget_s: float
) -> list[float]:
    """Seconds per timed call at one shape (warm-up untimed; CUDA graphs captured per shape)."""
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.integers(2, model.cfg.vocab_size, size=(batch, seq), dtype=np.int64)).to(
        device
    )
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        run = runner(model, mode, ids, mask)
        return time_runs(run, repeats=REPEATS, budget_s=budget_s, warmup=WARMUP, min_repeats=MIN_REPEATS)


def row(
    info: Any, mode: str, device: str, batch: int, seq: int, seconds: list[float], note: str
) -> dict[str, Any]:
    """A row in the in-process sweep's format (contract.results.SweepRow)."""
    st = summarize(seconds)
    p50_s = st["p50_ms"] / 1e3  # type: ignore[operator]
    return {
        "mode": "inproc",
        "load": "inproc",
        "model": info.name,
        "arch": info.arch,
        "layers": info.layers,
        "heads": info.heads,
        "batch": batch,
        "seq": seq,
        "concurrency": 1,
        "rate": None,
        "provider": f"torch-{device}",
        "variant": LABELS[mode],
        "requests": st.pop("count"),
        "errors": 0,
        **st,
        "rps": 1 / p50_s,
        "tokens_per_s": batch * seq / p50_s,
        "window_s": sum(seconds),
        "note": note,
    }


class BenchTorchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_TORCH_REF_", extra="ignore")

    repo: ModelRepository = Path("model_repository")
    models: ModelFolders = None
    device: Literal["cpu", "cuda"] = Field(default="cpu", description="where PyTorch runs")
    modes: str | None = Field(
        default=None,
        description=f"comma list of {', '.join(LABELS)} (default cpu: eager-fp32; cuda: eager-fp16,graph-fp16)",
    )
    batch: BatchSizes = "1,4"
    seq: str = Field(default="16,32", description="comma list of sequence lengths")
    budget_s: float = Field(default=0.4, gt=0, description="seconds per point")
    seed: int = Field(default=0, description="random-init weights' seed (as export's)")
    threads: TorchThreads = 0
    out: str = Field(
        default="results/torch", description="one results folder per mode under OUT (torch-<mode>)"
    )


def _ints(flag: str, value: str) -> list[int]:
    try:
        got = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        fail(f"{flag} must be a comma list of whole numbers (got {value!r})")
    if not got or min(got) < 1:
        fail(f"{flag} must list numbers of at least 1 (got {value!r})")
    return got


def _modes(a: Any) -> list[str]:
    modes = [x.strip() for x in (a.modes or DEFAULT_MODES[a.device]).split(",") if x.strip()]
    bad = [x for x in modes if x not in LABELS]
    if bad or not modes:
        fail(f"--modes: unknown {', '.join(bad) or 'empty list'}; choose from {', '.join(LABELS)}")
    if a.device == "cpu" and CUDA_ONLY & set(modes):
        fail(f"--modes {', '.join(sorted(CUDA_ONLY & set(modes)))} need --device cuda")
    if a.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: PyTorch sees no CUDA device")
    return modes


_TITLE = __doc__.splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    a = settings_from(
        BenchTorchSettings,
        settings_parser(BenchTorchSettings, "torchbench.torch_ref", _TITLE).parse_args(argv),
    )
    modes, batches, seqs = _modes(a), _ints("--batch", a.batch), _ints("--seq", a.seq)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        available = repo_models(Path(a.repo))
        names = (
            resolve([x for x in (a.models or "").split(",") if x], available, a.repo)
            if a.models
            else list(available)
        )
        refs = {n: reference_model(Path(a.repo) / n, a.seed) for n in names}
    except (PlanError, RebuildError) as exc:
        fail(str(exc))
    if not names:
        fail(f"no models in {a.repo}")
    t0, out = time.perf_counter(), Path(a.out)
    checks = {
        n: {"source": how, "onnx_max_abs_logits": onnx_delta(model, Path(a.repo) / n)}
        for n, (model, how) in refs.items()
    }
    meta = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": results.machine(nvml.gpu_names()),
        "versions": {**results.versions(), "torch": torch.__version__},
        "reference": checks,
        "providers": {"inproc": {n: f"torch-{a.device}" for n in names}},
        "notes": [
            f"{n}: {c['source']}; max |Δlogits| vs model.onnx {c['onnx_max_abs_logits']:.2e}"
            for n, c in checks.items()
        ],
    }
    for mode in modes:
        rows: list[dict[str, Any]] = []
        folder = out / f"torch-{mode}"
        for n in names:
            info, model = available[n], prepared(refs[n][0], mode, a.device)
            for b in batches:
                for q in seqs:
                    if q > info.max_sequence_length:
                        continue
                    secs = time_mode(model, mode, a.device, b, q, a.budget_s)
                    rows.append(row(info, mode, a.device, b, q, secs, refs[n][1]))
                    print(f"{LABELS[mode]} {n} b={b} s={q}: p50 {rows[-1]['p50_ms']:.3f} ms", file=sys.stderr)
                    results.write(folder, meta, rows)
            del model
        results.write(folder, {**meta, "elapsed_s": round(time.perf_counter() - t0, 2)}, rows)
        print(f"wrote {folder / results.JSON_NAME} ({len(rows)} points)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
