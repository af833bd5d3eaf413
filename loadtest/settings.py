"""The load tester's one settings object: env vars with the `H2H_LOADTEST_` prefix, CLI flags override.

Grid fields (models, batch, seq, concurrency, rates) are strings in the CLI's own syntax
("1,2,4", "1..64", "16,32,...,512"); `loadtest.sweep.grid` parses them. Empty means "the preset's".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loadtest.urls import ServiceUrl


class LoadtestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_LOADTEST_", extra="ignore", protected_namespaces=())

    preset: Literal["default", "paper", "tiny"] = Field(
        default="default", description="grid and models used for any flag left out"
    )
    models: str | None = Field(default=None, description="model names or arch aliases (mha, sha)")
    batch: str | None = None
    seq: str | None = None
    concurrency: str | None = Field(default=None, description="closed-loop concurrency levels (http)")
    rate: str | None = Field(default=None, description="open-loop request rates per second (http)")
    mode: Literal["inproc", "http", "both"] | None = None

    repo: Path = Field(default=Path("model_repository"), description="model repository (inproc)")
    url: ServiceUrl = Field(default="http://127.0.0.1:8000", description="running service (http)")
    out: Path = Path("results")

    duration: float | None = Field(default=None, gt=0, le=600, description="seconds per http point")
    warmup: float = Field(default=0.5, ge=0, le=60, description="http warm-up seconds per point")
    repeats: int = Field(
        default=50, ge=3, le=100_000, description="inproc timed runs per point (upper bound)"
    )
    inproc_budget: float = Field(default=1.0, gt=0, le=600, description="inproc seconds per point (soft)")
    provider: Literal["auto", "cuda", "cpu"] = "auto"
    variant: str | None = Field(default=None, description="model variant file key for inproc")
    timeout: float = Field(default=30.0, gt=0, description="per-request timeout (http)")
    client_procs: int = Field(default=1, ge=1, le=64, description="load client processes (http)")
    max_points: int = Field(default=400, ge=1, description="refuse grids larger than this")
    seed: int = 0
