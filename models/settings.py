"""The training program's one settings object (env vars H2H_TRAIN_*, CLI flags override)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.config import Arch, AttnInit, Norm
from models.data import DEFAULT_WORDNET_DIR


class TrainSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_TRAIN_", extra="forbid")

    arch: Arch = "mha"
    preset: Literal["tiny", "small", "base"] = "small"
    norm: Norm = "admin"
    epochs: int = Field(
        default=2, ge=1, le=100, description="epochs to train; the learning rate decays to 0 at the last"
    )
    max_steps: int | None = Field(
        default=None, ge=1, description="stop after this many steps (tests, smoke runs)"
    )
    batch_size: int = Field(default=64, ge=1, le=4096)
    lr: float = Field(default=1e-3, gt=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_frac: float = Field(default=0.06, ge=0, lt=1)
    clip_norm: float = Field(default=1.0, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    attn_init: AttnInit = Field(
        default="combined", description="attention init: combined (fairseq's, default) or per_head (older)"
    )
    max_len: int | None = Field(
        default=None, ge=2, le=4096, description="max tokens per text (default: the preset's)"
    )
    seed: int = Field(default=13, description="initialisation and batch order")
    split_seed: int = Field(
        default=13, description="train/validation/test split; fixed so seeds compare on the same data"
    )
    min_freq: int = Field(default=2, ge=1)
    max_vocab: int = Field(default=30000, ge=16)
    wordnet_dir: Path = DEFAULT_WORDNET_DIR
    out: Path = Path("runs")
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, ge=1)
    log_every: int = Field(default=20, ge=1)

    def run_name(self) -> str:
        return self.name or f"{self.arch}-{self.preset}-{self.norm}"
