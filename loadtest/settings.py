"""The load tester's settings: one class per subcommand that measures (sweep, capacity), each flag
described once, in its field. Every program of the project reads its flags from the environment
too (`H2H_LOADTEST_<FLAG>` here); a flag given on the command line wins.

Grid fields (models, batch, seq, concurrency, rates) are strings in the CLI's own syntax
("1,2,4", "1..64", "16,32,...,512"); `loadtest.sweep.grid` parses them. Empty means "the preset's".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loadtest.sweep.grid import GRID_HELP
from loadtest.urls import ServiceUrl


class HttpLoadSettings(BaseSettings):
    """What every subcommand that sends requests to a running service takes."""

    model_config = SettingsConfigDict(env_prefix="H2H_LOADTEST_", extra="ignore", protected_namespaces=())

    url: ServiceUrl = "http://127.0.0.1:8000"
    out: Path = Field(default=Path("results"), description="results folder")
    timeout: float = Field(default=30.0, gt=0, description="per-request timeout in seconds")
    client_procs: int = Field(default=1, ge=1, le=64, description="load client processes")
    seed: int = Field(default=0, description="seed of the request bodies and arrival times")


class LoadtestSettings(HttpLoadSettings):
    """`python -m loadtest sweep`."""

    preset: Literal["default", "paper", "tiny"] = Field(
        default="default",
        description="grid and models for flags left out: default is a 1-2 minute demo, paper is "
        "mha-base-random vs sha-base-random, tiny is seconds",
    )
    models: str | None = Field(
        default=None,
        description="comma list of repository folder names, or mha/sha for the single model of that arch",
    )
    batch: str | None = Field(default=None, description=f"batch sizes: {GRID_HELP}")
    seq: str | None = Field(
        default=None, description=f"sequence lengths: {GRID_HELP} (clamped to each model's maximum)"
    )
    concurrency: str | None = Field(
        default=None, description=f"closed-loop concurrency levels (http): {GRID_HELP}"
    )
    rate: str | None = Field(
        default=None, description="open-loop request rates per second, Poisson arrivals (http), e.g. 20,50"
    )
    mode: Literal["inproc", "http", "both"] | None = Field(
        default=None, description="where to measure (default: the preset's)"
    )
    repo: Path = Field(default=Path("model_repository"), description="model repository for in-process runs")
    duration: float | None = Field(
        default=None, gt=0, le=600, description="seconds per http point (default: the preset's)"
    )
    warmup: float = Field(default=0.5, ge=0, le=60, description="http warm-up seconds per point")
    repeats: int = Field(default=50, ge=3, le=100_000, description="in-process: most timed runs per point")
    inproc_budget: float = Field(default=1.0, gt=0, le=600, description="in-process: seconds per point")
    provider: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="in-process execution provider"
    )
    variant: str | None = Field(default=None, description="in-process model variant, e.g. model.opt.onnx")
    inproc_blocks: int = Field(
        default=1,
        ge=1,
        le=100,
        description="in-process: blocks of runs per point, each giving a p50, so a point states the spread "
        "of its repeats (up to twice as many blocks while they spread by more than 10%%)",
    )
    clock: Literal["wall", "cpu"] = Field(
        default="wall",
        description="in-process: time each run by the wall clock, or by this process's CPU seconds (a machine "
        "shared with other jobs inflates wall time, not the work; CPU seconds count every ONNX Runtime thread "
        "of this process, idle spinning included)",
    )
    max_points: int = Field(default=400, ge=1, description="refuse grids larger than this")
