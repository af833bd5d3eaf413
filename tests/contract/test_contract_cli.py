"""contract/cli.py: flags generated from a settings class, values through it, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.cli import settings_from, settings_parser


class Demo(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_T_")

    mode: Literal["fast", "slow"] = Field(default="fast", description="how")
    rate: float = Field(default=2.5, gt=0, description="per second")
    count: int | None = Field(default=None, description="how many (default: all)")
    names: list[str] | None = Field(default=None, description="which")
    force: bool = Field(default=False, description="redo")
    out: Path = Path("results")


def _parse(*argv: str) -> Demo:
    return settings_from(Demo, settings_parser(Demo, "demo", "test").parse_args(list(argv)))


def test_flags_help_choices_and_defaults_come_from_the_class() -> None:
    p = settings_parser(Demo, "demo", "test")
    acts = {a.dest: a for a in p._actions}
    assert acts["mode"].choices == ["fast", "slow"]
    assert acts["rate"].help == "per second [H2H_T_RATE] (default 2.5)"
    assert acts["count"].help == "how many (default: all) [H2H_T_COUNT]"  # None: no default shown
    assert acts["out"].help == "out [H2H_T_OUT] (default results)"
    assert acts["names"].nargs == "+"
    assert acts["force"].option_strings == ["--force", "--no-force"]


def test_values_flags_over_env_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("H2H_T_RATE", "7")
    s = _parse("--mode", "slow", "--names", "a", "b", "--force", "--count", "3")
    assert (s.mode, s.rate, s.names, s.force, s.count, s.out) == (
        "slow",
        7.0,
        ["a", "b"],
        True,
        3,
        Path("results"),
    )
    assert _parse("--rate", "1.5").rate == 1.5  # a flag beats the environment
    assert _parse("--no-force").force is False


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--rate", "0"], "error: rate: Input should be greater than 0"),
        (["--rate", "x"], "error: demo: argument --rate: invalid float value: 'x' (see --help)"),
        (["--mode", "warp"], "error: demo: argument --mode: invalid choice: 'warp'"),
        (["--force", "yes"], "error: demo: unrecognized arguments: yes"),  # a switch takes no value
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], says: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parse(*argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith(says), err


class Copy(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_T_COPY_")

    src: Path = Field(description="file to read")
    dst: Path | None = Field(default=None, description="file to write (default: beside src)")


def test_positional_fields_are_arguments_with_the_fields_help() -> None:
    p = settings_parser(Copy, "copy", "test", positional=["src", "dst"])
    acts = {a.dest: a for a in p._actions}
    assert acts["src"].option_strings == [] and acts["src"].help == "file to read [H2H_T_COPY_SRC]"
    assert acts["dst"].nargs == "?" and acts["dst"].help.startswith("file to write")
    s = settings_from(Copy, p.parse_args(["a"]))
    assert (s.src, s.dst) == (Path("a"), None)
