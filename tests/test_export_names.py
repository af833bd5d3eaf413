"""Export's defaults and default names: one source for each (no model is exported here)."""

from __future__ import annotations

from export import cli
from export.settings import ExportOptions


def test_cli_defaults_are_the_api_defaults() -> None:
    args = cli.build_parser().parse_args(["runs/x"])
    assert cli._options(args) == ExportOptions()
