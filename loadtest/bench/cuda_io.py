"""Where a small request's time goes on CUDA, below HTTP: the model alone, the service's IO path
(host arrays in, host arrays out: what `service.runtime.session.OrtModel.run` does per batch) and the
model replayed as a captured CUDA graph (ORT's `enable_cuda_graph`, one fixed shape per session).

    python -m loadtest.bench.cuda_io --repo results/small-repo --shapes 1x16,8x64

A deep single-head model launches ~12x the kernels of its shallow twin, so at small shapes it is
bound by kernel launches, which is what a CUDA graph removes; this says by how much, or why ORT
refused to capture. Without a GPU it exits 2 with one line.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.atomic import write_json
from contract.cli import fail, settings_from, settings_parser
from contract.flags import ModelRepository
from contract.results import machine
from loadtest.sweep.inproc import InprocModel, random_batch, time_runs


def p50_ms(run: Callable[[], Any]) -> float:
    times = time_runs(run, repeats=200, budget_s=3.0, warmup=3, min_repeats=5)
    return round(statistics.median(times) * 1e3, 4)


def measure(model_dir: Path, variant: str | None, batch: int, seq: int) -> dict[str, Any]:
    plain = InprocModel(model_dir, provider="cuda", variant=variant, cuda_graph=False)
    ids, mask = random_batch(batch, seq, plain.manifest.vocab_size, np.random.default_rng(0))
    row: dict[str, Any] = {
        "model": plain.manifest.name,
        "variant": plain.variant,
        "batch": batch,
        "seq": seq,
        "provider": plain.provider,
    }
    row["alone_ms"] = p50_ms(plain.model.device_runner(ids, mask))
    row["service_io_ms"] = p50_ms(lambda: plain.model.run(ids, mask))
    try:
        graph = InprocModel(model_dir, provider="cuda", variant=variant, cuda_graph=True)
        row["cuda_graph_ms"] = p50_ms(graph.model.device_runner(ids, mask))
    except Exception as exc:  # noqa: BLE001 - ORT's refusal is the finding
        row["cuda_graph_error"] = str(exc).splitlines()[0][:300]
    return row


class CudaIoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_BENCH_CUDA_IO_", extra="forbid")

    repo: ModelRepository = Path("model_repository")
    models: str | None = Field(
        default=None, description="comma-separated model folders (default: every model in --repo)"
    )
    variant: str | None = Field(
        default=None, description="variant file, e.g. model.fp16.onnx (default: each model's default)"
    )
    shapes: str = Field(default="1x16,8x64", description="batch x seq list")
    out: Path | None = Field(default=None, description="also write the rows to this JSON file")

    @field_validator("shapes")
    @classmethod
    def _shapes(cls, text: str) -> str:
        try:
            [(int(b), int(s)) for b, s in (item.lower().split("x") for item in text.split(","))]
        except ValueError:
            raise ValueError(f"--shapes must look like 1x16,8x64 (got {text!r})") from None
        return text

    def shape_list(self) -> list[tuple[int, int]]:
        return [(int(b), int(s)) for b, s in (item.lower().split("x") for item in self.shapes.split(","))]


def main(argv: list[str] | None = None) -> int:
    p = settings_parser(CudaIoSettings, "bench_cuda_io", __doc__.splitlines()[0])
    a = settings_from(CudaIoSettings, p.parse_args(argv))
    shapes = a.shape_list()
    # onnxruntime after the flags: --help and a bad flag answer without loading it
    import onnxruntime as ort

    from service.runtime.session import CUDA, gpu_count

    if CUDA not in ort.get_available_providers() or gpu_count() == 0:
        fail("bench_cuda_io: needs onnxruntime's CUDAExecutionProvider and an NVIDIA GPU")
    names = (
        a.models.split(",")
        if a.models
        else sorted(d.name for d in a.repo.iterdir() if (d / "manifest.json").is_file())
    )
    rows = [measure(a.repo / n, a.variant, b, s) for n in names for b, s in shapes]
    for r in rows:
        graph = f"{r['cuda_graph_ms']:8.3f}" if "cuda_graph_ms" in r else "refused: " + r["cuda_graph_error"]
        print(
            f"{r['model']:>20} {r['variant']:>16} {r['batch']:>3}x{r['seq']:<4} alone {r['alone_ms']:8.3f}  "
            f"service IO {r['service_io_ms']:8.3f}  CUDA graph {graph}"
        )
    if a.out:
        write_json(a.out, {"machine": machine(), "rows": rows})
    print(json.dumps(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
