"""`python -m loadtest profile`: flags, the run, the table on stdout, profile.json and report.md."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract import results
from contract.atomic import write_text
from contract.cli import fail, settings_flags, settings_from
from contract.flags import BatchRows, ModelRepository, TokensPerRow
from contract.manifest import FP32_FILE
from loadtest.models import PlanError
from loadtest.profile import render, runner
from loadtest.profile.trace import TraceError

REPORT_NAME = "report.md"


def _names(v: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (v or "").split(",") if x.strip())


class ProfileSettings(BaseSettings):
    """`loadtest profile`'s options, one field per flag (flags and help are generated from it)."""

    model_config = SettingsConfigDict(env_prefix="H2H_PROFILE_", extra="forbid", protected_namespaces=())

    repo: ModelRepository = Path("model_repository")
    models: str | None = Field(
        default=None, description="comma list of folder names or mha/sha (default: every model)"
    )
    variant: str = Field(default=FP32_FILE, description="comma list of variant files")
    provider: Literal["auto", "cuda", "cpu"] = Field(default="auto", description="execution provider")
    batch: BatchRows = 1
    seq: TokensPerRow = 16
    runs: int = Field(default=20, description="profiled runs after the warm-up")
    warmup: int = Field(default=3, description="runs left out of the profile")
    seed: int = Field(default=0, description="random token ids")
    out: Path = Field(default=Path("results/profile"), description="folder for profile.json and report.md")

    @field_validator("batch", "seq", "runs", "warmup")
    @classmethod
    def _counts(cls, v: int, info: ValidationInfo) -> int:
        """At least 1, the warm-up runs at least 0."""
        least = "0 or more" if info.field_name == "warmup" else "at least 1"
        if v < (0 if info.field_name == "warmup" else 1):
            raise ValueError(f"--{info.field_name} must be {least} (got {v})")
        return v

    @field_validator("variant")
    @classmethod
    def _variant(cls, v: str) -> str:
        if not _names(v):
            raise ValueError("--variant names no variant file (e.g. model.onnx,model.fp16.onnx)")
        return v


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "profile", help="where one run's time goes per model: ONNX Runtime's profiler by operator class"
    )
    settings_flags(p, ProfileSettings)


def _spec(s: ProfileSettings) -> runner.ProfileSpec:
    same = s.model_dump(include={"repo", "provider", "batch", "seq", "runs", "warmup", "seed"})
    return runner.ProfileSpec(models=_names(s.models), variants=_names(s.variant), **same)


def cmd_profile(args: Any, rebuild: Callable[[Path], Path] | None = None) -> int:
    """Profile, print the table, write profile.json and a report. `rebuild` (the load tester's
    report writer, handed in by its CLI so that this package does not import the report's): when
    OUT is a sweep's or capacity search's folder, its whole report is rebuilt with the profile as
    one section; a folder of its own gets the profile alone."""
    settings = settings_from(ProfileSettings, args, ("command",))
    spec = _spec(settings)
    try:
        data = runner.profile(spec)
    except (PlanError, TraceError) as exc:
        fail(str(exc))
    if not data["rows"]:
        fail(f"nothing to profile: {'; '.join(data['notes']) or 'no models in ' + str(spec.repo)}")
    out = settings.out
    path = runner.write(out, data)
    shared = (out / results.JSON_NAME).is_file() or (out / results.CAPACITY_JSON_NAME).is_file()
    if shared and rebuild is not None:
        report = rebuild(out)
    else:
        write_text(out / REPORT_NAME, "\n".join(["# Profile", "", *render.section_md(data)]) + "\n")
        report = out / REPORT_NAME
    print(render.text_table(data))
    print(f"wrote {path} and {report}", file=sys.stderr)
    return 0
