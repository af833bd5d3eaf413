"""Export's defaults, stated once: the CLI's flags, the Python API and the parity proof read them here.

Torch-free on purpose: `python -m export --help` and usage errors must not wait for torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_OPSET, MAX_OPSET = 17, 20  # what the exporter and both runtimes were checked with
DEFAULT_OPSET = MIN_OPSET
FP16_TOLERANCE = 1e-2  # max |logits diff| for model.fp16.onnx; deep models may need more
RANDOM_VOCAB = 30522  # BERT's vocabulary size: the random-init embedding table matches BERT-base
DEFAULT_RANDOM_PRESET = "base"  # the paper's benchmark pair


@dataclass(frozen=True)
class ExportOptions:
    """How to export one model; the same object for a training run and a random-init preset,
    so the two entry points (and the CLI in front of them) cannot drift apart in defaults."""

    opset: int = DEFAULT_OPSET
    fp16: bool = False  # also write model.fp16.onnx
    optimize: bool = False  # also write model.opt.onnx (ONNX Runtime's transformer optimizer)
    gpu: bool = False  # also write model.gpu.onnx (fused for CUDA, then fp16; parity pending on CUDA)
    seed: int = 0  # parity batches (and the weights of a random-init export)
    fp16_tolerance: float = FP16_TOLERANCE


class ExportCliSettings(BaseSettings):
    """`python -m export`'s options, one field per flag (the CLI's flags and help come from here);
    `options()` is the API's ExportOptions, so CLI and API defaults are the same objects."""

    model_config = SettingsConfigDict(env_prefix="H2H_EXPORT_", extra="forbid")

    run_dir: Path | None = Field(default=None, description="training run directory (runs/<name>/)")
    repo: Path = Field(default=Path("model_repository"), description="model repository folder")
    name: str | None = Field(default=None, description="model folder name (default <arch>-<preset>)")
    opset: int = Field(default=DEFAULT_OPSET, description=f"ONNX opset, {MIN_OPSET}-{MAX_OPSET}")
    fp16: bool = Field(default=False, description="also write model.fp16.onnx")
    fp16_tolerance: float = Field(
        default=FP16_TOLERANCE,
        description="max |logits diff| allowed for the fp16 variant (deep models may need more)",
    )
    optimize: bool = Field(default=False, description="also write model.opt.onnx (ORT optimizer)")
    gpu: bool = Field(
        default=False,
        description="also write model.gpu.onnx: fused for CUDA, then fp16 (--fp16-tolerance); the service proves "
        "its parity on CUDA at start",
    )
    random_init: bool = Field(
        default=False, description="export random weights of --preset (speed benchmarks only; no RUN_DIR)"
    )
    preset: str | None = Field(
        default=None, description=f"with --random-init: tiny, small or base (default {DEFAULT_RANDOM_PRESET})"
    )
    arch: Literal["both", "mha", "sha"] = Field(default="both", description="with --random-init")
    vocab_size: int | None = Field(default=None, description=f"with --random-init (default {RANDOM_VOCAB})")
    seed: int = Field(default=0, description="weights (random-init) and parity batches")
    threads: int | None = Field(default=None, description="torch/ORT threads (default: all cores)")

    @field_validator("opset")
    @classmethod
    def _opset(cls, v: int) -> int:
        if not MIN_OPSET <= v <= MAX_OPSET:
            raise ValueError(f"--opset {v} is not supported; use {MIN_OPSET} to {MAX_OPSET}")
        return v

    @field_validator("fp16_tolerance")
    @classmethod
    def _tolerance(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise ValueError("--fp16-tolerance must be in (0, 1]")
        return v

    @field_validator("threads")
    @classmethod
    def _threads(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("--threads must be at least 1")
        return v

    @model_validator(mode="after")
    def _source(self) -> ExportCliSettings:
        """A run directory or --random-init, and the flags that belong to the one chosen."""
        if self.random_init:
            if self.run_dir is not None:
                raise ValueError("give either RUN_DIR or --random-init, not both")
            self.preset = self.preset or DEFAULT_RANDOM_PRESET
            if self.name and self.arch == "both":
                raise ValueError("--name needs a single --arch (mha or sha) with --random-init")
            if self.vocab_size is not None and self.vocab_size < 3:
                raise ValueError("--vocab-size must be at least 3")
            return self
        if self.run_dir is None:
            raise ValueError("RUN_DIR is required (or use --random-init --preset base)")
        for flag in ("preset", "vocab_size"):
            if getattr(self, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} only applies with --random-init")
        return self

    def options(self) -> ExportOptions:
        """The API's options object from the fields of the same names."""
        return ExportOptions(**self.model_dump(include={f.name for f in fields(ExportOptions)}))
