"""The server's one settings object: env vars with the `H2H_` prefix, CLI flags override.

`MODEL_REPOSITORY` (no prefix) is accepted too, the name Triton-style deployments give it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.flags import BindAddress, Port
from contract.manifest import MODEL_NAME_RE
from service.runtime import nvml
from service.runtime.config import RuntimeConfig
from service.runtime.cores import usable_cores

# The CPU hosts where one process serves best by default: on the 2-core CPU box the engine process
# and its front cost more CPU per request than they give (docs/benchmarks.md, "Process shape");
# on more cores, unmeasured, the engine process and one front per two cores stay the default.
ONE_PROCESS_MAX_CORES = 2


def one_process_by_default(provider: str) -> bool:
    """One process on a CPU host (no GPU to run on) with at most ONE_PROCESS_MAX_CORES usable
    cores; on a CUDA host the engine keeps its process (its batches overlap the fronts' work)."""
    host = nvml.probe() if provider == "auto" else None
    gpu = provider == "cuda" or (host is not None and bool(host.gpus))
    return not gpu and usable_cores() <= ONE_PROCESS_MAX_CORES


class ServiceSettings(BaseSettings, RuntimeConfig):
    model_config = SettingsConfigDict(
        env_prefix="H2H_", extra="ignore", populate_by_name=True, protected_namespaces=()
    )

    # where models come from
    model_repository: Path = Field(
        default=Path("model_repository"),
        validation_alias=AliasChoices("H2H_MODEL_REPOSITORY", "MODEL_REPOSITORY"),
        description="folder with one sub-folder per model (export's output)",
    )
    models: list[str] | None = Field(
        default=None, description="load only these model names (default: every folder)"
    )
    variant: str | None = Field(
        default=None,
        description="variant key to load (model.onnx, model.opt.onnx, model.fp16.onnx, model.gpu.onnx) instead "
        "of the best proven one (on CUDA model.gpu.onnx when its parity is proven there, else the manifest's "
        "default); refused when its parity is unproven on the provider; a model lacking it gets the best one",
    )
    allow_unproven: bool = Field(
        default=False,
        description="serve the variant named by H2H_VARIANT even when its parity is not proven on the "
        "provider (export proves fp16 variants on CPU; on CUDA they are proven at start from the reference "
        "batches in the model folder)",
    )

    # HTTP
    host: BindAddress = "0.0.0.0"
    port: Port = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="larger bodies get 413")
    shutdown_grace_s: PositiveFloat = Field(
        default=30.0, description="SIGTERM: time allowed to finish accepted requests"
    )
    retry_after_s: NonNegativeInt = Field(default=1, description="Retry-After on 429/503")
    require_all_models: bool = Field(
        default=False, description="/v2/health/ready needs every model (default: at least one)"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = Field(default=False, description="uvicorn's plain-text access log")
    access_log_json: bool = Field(
        default=False,
        description="one JSON line per request on stdout: method, route template, model, status, "
        "latency, request id (never bodies)",
    )

    # processes
    fronts: NonNegativeInt = Field(
        default=0,
        description="HTTP front processes (parsing, validation, tokenisation, admission, responses) in front "
        "of the one engine process that runs the models (set: the engine process is used); 0 (auto): one per "
        "two usable cores, at least 1",
    )
    single_process: bool | None = Field(
        default=None,
        description="true: one process serves HTTP and runs the models; false: an engine process runs them "
        f"behind the fronts; unset: one process on a CPU host with at most {ONE_PROCESS_MAX_CORES} usable "
        "cores (where the engine process costs more than it gives: docs/benchmarks.md), else the engine process",
    )
    engine_restarts: NonNegativeInt = Field(
        default=5,
        description="engine deaths (kill, crash) restarted within a minute before the service gives up and "
        "exits 1 for its orchestrator; every front answers 503 not-ready while the engine is down",
    )
    null_engine: bool = Field(
        default=False,
        description="benchmarks only: the engine answers every request at once with zeros, running no "
        "model (models still load, so the fronts validate and tokenise as usual): the fronts' own ceiling",
    )

    warmup: bool = Field(
        default=True,
        description="before a model is ready, capture all its CUDA graphs (on CUDA with cuda_graph), else run "
        "one small batch; false: graphs are captured the first time each shape runs",
    )

    # dynamic batcher
    max_queue_delay_ms: NonNegativeFloat = Field(
        default=0.0,
        description="extra wait for more rows before a batch runs. 0: a request that finds its model idle "
        "runs at once and rows arriving meanwhile form the next batch (TEI's rule)",
    )
    max_queue_rows: int = Field(default=512, ge=1, description="queued rows per model before 429")
    admission_wait_ms: NonNegativeFloat = Field(
        default=250.0,
        description="when a model's queue is full, how long a request may wait, body unread and first "
        "come first served, for room before it is answered 429; 0: refuse at once",
    )
    inline_compute_ms: NonNegativeFloat = Field(
        default=1.0,
        description="run a batch on the event loop, skipping the worker-thread hand-off, when nothing "
        "else is queued and batches of its shape take less than this; 0: always the worker thread",
    )
    request_timeout_s: PositiveFloat = Field(default=30.0, description="per-request limit (504)")
    reject_status: Literal[429, 503] = Field(default=429, description="status for a full queue")

    @field_validator("models")
    @classmethod
    def _names(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            if not MODEL_NAME_RE.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid model name")
        return v

    def one_process(self) -> bool:
        """The process shape to serve in: the setting; fronts asked for, the engine process;
        else the measured best for this host (`one_process_by_default`)."""
        if self.single_process is not None:
            return self.single_process
        return not self.fronts and one_process_by_default(self.provider)

    def front_count(self) -> int:
        """The fronts to run beside an engine process: the setting, or one per two usable cores
        (1 on a 2-core host). Here, not in the supervisor, so a tool that plans a run (the GPU
        round) reads it without importing the process manager."""
        return self.fronts or max(1, usable_cores() // 2)
