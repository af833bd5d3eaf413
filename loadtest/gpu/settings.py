"""`python -m loadtest gpu-report`'s options (flags and help are generated from the fields)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GpuReportSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_GPU_REPORT_", extra="ignore")

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
