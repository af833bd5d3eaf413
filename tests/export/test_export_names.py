"""Export's defaults and default names: one source for each (no model is exported here)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from export import api, cli
from export.settings import ExportOptions
from models.checkpoint import load_run


def test_cli_defaults_are_the_api_defaults() -> None:
    args = cli.build_parser().parse_args(["runs/x"])
    assert cli._options(args) == ExportOptions()


def test_default_name_reads_the_recorded_preset(tiny_runs: dict[str, Path]) -> None:
    run = load_run(tiny_runs["mha"])
    assert run.metrics["preset"] == "tiny"  # models.train records it
    assert api.default_name(run) == "mha-tiny"
    # the recorded preset wins over the shape (here the shape says "tiny")
    recorded = dataclasses.replace(run, metrics={**run.metrics, "preset": "small"})
    assert api.default_name(recorded) == "mha-small"


def test_default_name_falls_back_to_the_shape(tiny_runs: dict[str, Path]) -> None:
    """Runs saved mid-training (complete: false) carry no preset in metrics.json."""
    run = load_run(tiny_runs["sha"])
    partial = dataclasses.replace(run, metrics={"complete": False, "epoch": 1, "validation_accuracy": 0.1})
    assert api.default_name(partial) == "sha-tiny"
    odd = dataclasses.replace(
        partial, config=run.config.model_copy(update={"layers": 3}), path=Path("Runs/My-Run")
    )
    assert api.default_name(odd) == "my-run"
