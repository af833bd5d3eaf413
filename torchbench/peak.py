"""The matrix rate this device reaches: square matmuls timed in PyTorch, fp16, TF32 and fp32.

    python -m torchbench.peak [--device cuda] [--n 8192] [--out results/peak]

A model's achieved TFLOP/s means little without the rate the same card reaches on the most
favourable work it has: one large square matmul per precision, best of a few timed calls. The
result (peak.json) is what the GPU report divides achieved rates by. On the CPU it times fp32 only.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract import results
from contract.atomic import write_json
from contract.cli import settings_from, settings_parser
from loadtest.gpu.plan import PEAK_JSON


class PeakSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_PEAK_", extra="ignore")

    device: Literal["cpu", "cuda"] = Field(default="cuda", description="where the matmuls run")
    n: int = Field(default=8192, ge=16, le=32768, description="side of the square matrices")
    calls: int = Field(default=10, ge=1, le=1000, description="timed calls per precision (best kept)")
    out: Path = Field(default=Path("results/peak"), description=f"folder for {PEAK_JSON}")


def matmul_tflops(n: int, dtype: torch.dtype, device: str, calls: int, tf32: bool = False) -> float:
    """Best TFLOP/s of `calls` n x n @ n x n products (2 n^3 flops each) after one untimed call."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a @ b
        sync()
        best = float("inf")
        for _ in range(calls):
            t0 = time.perf_counter()
            a @ b
            sync()
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    return 2 * n**3 / best / 1e12


def measure(s: PeakSettings) -> dict[str, float]:
    """Precision -> TFLOP/s on the device (fp16 and TF32 on CUDA only)."""
    rates = {"fp32": matmul_tflops(s.n, torch.float32, s.device, s.calls)}
    if s.device == "cuda":
        rates["tf32"] = matmul_tflops(s.n, torch.float32, s.device, s.calls, tf32=True)
        rates["fp16"] = matmul_tflops(s.n, torch.float16, s.device, s.calls)
    return rates


def main(argv: list[str] | None = None) -> int:
    s = settings_from(
        PeakSettings,
        settings_parser(PeakSettings, "torchbench.peak", __doc__.splitlines()[0]).parse_args(argv),
    )
    t0 = time.perf_counter()
    rates = measure(s)
    data = {
        "complete": True,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if s.device == "cuda" else results.cpu_model(),
        "n": s.n,
        "calls": s.calls,
        "tflops": rates,
        "seconds": round(time.perf_counter() - t0, 2),
        "versions": {"torch": torch.__version__},
    }
    s.out.mkdir(parents=True, exist_ok=True)
    write_json(s.out / PEAK_JSON, data)
    print(", ".join(f"{k} {v:.1f} TFLOP/s" for k, v in rates.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
