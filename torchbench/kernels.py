"""Where GPU time goes, kernel by kernel: each model run through ONNX Runtime (every variant, CUDA
graphs off and on) and through PyTorch on the same weights, with CUPTI recording every kernel
(`torchbench.cupti_record`).

    python -m torchbench.kernels --repo DIR --models a,b --variants model.onnx,model.gpu.onnx \
        [--torch-modes eager-fp16,graph-fp16] [--batch 1] [--seq 128] [--runs 20] [--out results/kernels]

Writes kernels.json (one row per model x way of running it) and report.md (the table, then one
sentence per architecture saying where its time goes). Sessions are the service's own, as in the
in-process sweep: IO binding, outputs left on the device, each run ending when the GPU is done.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract import results
from contract.atomic import write_json, write_text
from contract.cli import fail, settings_from, settings_parser
from contract.flags import BatchRows, ModelFolders, ModelRepository, TokensPerRow
from contract.manifest import FP32_FILE, load_manifest, verify_variant
from loadtest.gpu.kernel_page import KernelRow, headline_rows, section_md, where_time_goes
from loadtest.gpu.plan import KERNELS_JSON
from loadtest.models import PlanError, repo_models, resolve
from loadtest.sweep.inproc import random_batch
from service.runtime import nvml
from service.runtime.config import RuntimeConfig
from service.runtime.session import OrtModel
from torchbench import cupti_record, torch_ref

WARMUP = 3


class KernelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_KERNELS_", extra="ignore")

    repo: ModelRepository = Path("model_repository")
    models: ModelFolders = None
    variants: str = Field(default=FP32_FILE, description="comma list of ONNX variant files")
    graphs: Literal["off", "on", "both"] = Field(default="both", description="CUDA graphs for the ONNX runs")
    torch_modes: str = Field(default="", description="comma list of PyTorch modes (torchbench.torch_ref)")
    provider: Literal["cuda", "cpu"] = Field(default="cuda", description="ONNX Runtime's provider")
    batch: BatchRows = Field(default=1, ge=1)
    seq: TokensPerRow = Field(default=128, ge=1)
    runs: int = Field(default=20, ge=1, description="recorded runs after the warm-up")
    out: Path = Field(default=Path("results/kernels"), description=f"folder for {KERNELS_JSON} and report.md")


def _names(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def ort_rows(model_dir: Path, s: KernelSettings) -> list[KernelRow]:
    """Each variant of `model_dir`, CUDA graphs off and/or on, one profile each."""
    m = load_manifest(model_dir)
    ids, mask = random_batch(s.batch, s.seq, m.vocab_size, np.random.default_rng(0))
    rows = []
    for variant in _names(s.variants):
        if variant not in m.variants:
            continue
        for graphs in {"off": [False], "on": [True], "both": [False, True]}[s.graphs]:
            settings = RuntimeConfig(provider=s.provider, cuda_graph=graphs)
            model = OrtModel(verify_variant(model_dir, m, variant), settings)
            prof = cupti_record.record(model.device_runner(ids, mask), runs=s.runs, warmup=WARMUP)
            how = variant + (" + CUDA graphs" if model.graphs is not None else "")
            rows.append(KernelRow(model_dir.name, m.arch, m.layers, m.heads, "onnxruntime", how, prof))
            del model
    return rows


def torch_rows(model_dir: Path, s: KernelSettings) -> list[KernelRow]:
    """Each PyTorch mode on the export's own weights (torchbench.torch_ref)."""
    m = load_manifest(model_dir)
    model, _ = torch_ref.reference_model(model_dir, 0)
    device = "cuda" if s.provider == "cuda" else "cpu"
    ids_np, _ = random_batch(s.batch, s.seq, m.vocab_size, np.random.default_rng(0))
    ids = torch.from_numpy(ids_np).to(device)
    rows = []
    for mode in _names(s.torch_modes):
        prepared = torch_ref.prepared(model, mode, device)
        with torch.inference_mode():
            prof = cupti_record.record(
                torch_ref.runner(prepared, mode, ids, torch.ones_like(ids)), runs=s.runs, warmup=WARMUP
            )
        rows.append(
            KernelRow(model_dir.name, m.arch, m.layers, m.heads, "torch", torch_ref.LABELS[mode], prof)
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = settings_parser(KernelSettings, "torchbench.kernels", __doc__.splitlines()[0])
    s = settings_from(KernelSettings, parser.parse_args(argv))
    try:
        available = repo_models(s.repo)
        names = resolve(_names(s.models), available, str(s.repo)) if s.models else list(available)
    except PlanError as exc:
        fail(str(exc))
    if s.provider == "cuda":  # PyTorch's CUDA context before the first recording: CUPTI attaches there
        torch.cuda.init()
    rows: list[KernelRow] = []
    for name in names:
        rows += ort_rows(s.repo / name, s)
        rows += torch_rows(s.repo / name, s) if s.torch_modes else []
        print(f"kernels: {name} done", file=sys.stderr)
    data = {
        "complete": True,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "spec": s.model_dump(mode="json", include={"batch", "seq", "runs", "provider"}),
        "machine": results.machine(nvml.gpu_names()),
        "rows": [r.as_json() for r in rows],
    }
    s.out.mkdir(parents=True, exist_ok=True)
    write_json(s.out / KERNELS_JSON, data)
    write_text(s.out / "report.md", "\n".join(["# CUDA kernels", "", *section_md(data, "## Per run")]) + "\n")
    print("\n".join(where_time_goes(r) for r in headline_rows(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
