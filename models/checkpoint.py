"""A training run directory: weights, config, tokenizer, metrics, written atomically.

Layout of `runs/<name>/`:
  model.safetensors   weights
  config.json         {"format", "model": ModelConfig, "labels": [...]}
  tokenizer.json      contract.tokenizer.Tokenizer
  metrics.json        accuracies, params, FLOPs, timings, settings
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from contract import atomic
from contract.tokenizer import Tokenizer
from models.config import ModelConfig
from models.encoder import Encoder, build

RUN_FORMAT = "headtohead-run/1"
RUN_FILES = ("model.safetensors", "config.json", "tokenizer.json", "metrics.json")


class RunDirError(ValueError):
    """A run directory that is missing, incomplete or corrupt; message names the file."""


@dataclass
class Run:
    model: Encoder
    config: ModelConfig
    tokenizer: Tokenizer
    labels: list[str]
    metrics: dict[str, Any]
    path: Path


def save_run(
    run_dir: str | Path,
    model: Encoder,
    tokenizer: Tokenizer,
    labels: list[str],
    metrics: dict[str, Any],
) -> Path:
    """Write the whole run folder in one atomic rename."""
    run_dir = Path(run_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic.staged_dir(run_dir) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": RUN_FORMAT})
        atomic.write_json(
            tmp / "config.json", {"format": RUN_FORMAT, "model": model.cfg.model_dump(), "labels": labels}
        )
        tokenizer.save(tmp / "tokenizer.json")
        atomic.write_json(tmp / "metrics.json", metrics)
    return run_dir


def load_run(run_dir: str | Path, *, map_location: str = "cpu") -> Run:
    """Rebuild the model of a run; raises RunDirError naming what is wrong."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    for name in RUN_FILES:
        if not (run_dir / name).is_file():
            raise RunDirError(f"run directory {run_dir} has no {name} (was training interrupted?)")
    try:
        raw = json.loads((run_dir / "config.json").read_text())
        if raw.get("format") != RUN_FORMAT:
            raise ValueError(f"format is {raw.get('format')!r}, expected {RUN_FORMAT!r}")
        # runs written before `attn_init` existed were initialised per projection
        cfg = ModelConfig.model_validate({"attn_init": "per_head", **raw["model"]})
        labels = list(raw["labels"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{run_dir / 'config.json'} is corrupt: {str(exc).splitlines()[0]}") from exc
    try:
        tokenizer = Tokenizer.load(run_dir / "tokenizer.json")
    except (ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{run_dir / 'tokenizer.json'} is corrupt: {exc}") from exc
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except ValueError as exc:
        raise RunDirError(f"{run_dir / 'metrics.json'} is corrupt: {exc}") from exc
    model = build(cfg)
    try:
        state = load_file(str(run_dir / "model.safetensors"), device=map_location)
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise RunDirError(f"{run_dir / 'model.safetensors'} is corrupt: {str(exc).splitlines()[0]}") from exc
    if tokenizer.vocab_size != cfg.vocab_size:
        raise RunDirError(
            f"{run_dir}: tokenizer has {tokenizer.vocab_size} words, model expects {cfg.vocab_size}"
        )
    model.eval()
    return Run(model=model, config=cfg, tokenizer=tokenizer, labels=labels, metrics=metrics, path=run_dir)


def random_run(cfg: ModelConfig, tokenizer: Tokenizer, labels: list[str], seed: int = 0) -> Run:
    """A randomly initialised model, for speed benchmarks where weights do not matter."""
    torch.manual_seed(seed)
    model = build(cfg).eval()
    return Run(
        model=model,
        config=cfg,
        tokenizer=tokenizer,
        labels=labels,
        metrics={"random_init": True},
        path=Path("<random-init>"),
    )
