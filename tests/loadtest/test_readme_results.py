"""README's Results table is the committed result files' (loadtest.report.readme): it regenerates
unchanged, a wrong figure fails the check, and the GPU rows come from each card's newest round."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.report import readme
from tests.conftest import ROOT


def test_readme_table_is_what_the_files_say() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.with_table(text, readme.table()) == text, (
        "run `make readme` (python -m loadtest.report.readme)"
    )


def test_a_wrong_figure_fails_the_check(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    copy = tmp_path / "README.md"
    copy.write_text(text.replace("| 2,269 |", "| 2,296 |"), encoding="utf-8")
    assert readme.main(["--check", "--readme", str(copy)]) == 1
    assert "-| requests/s within p99" in capsys.readouterr().err
    assert readme.main(["--readme", str(copy)]) == 0 and copy.read_text(encoding="utf-8") == text


def test_the_gpu_rows_come_from_each_cards_newest_round(tmp_path: Path) -> None:
    for folder, card, created in (
        ("h100", "NVIDIA H100", "2026-11-25T17:45:13+00:00"),
        ("h100-again/report", "NVIDIA H100", "2026-12-05T10:00:00+00:00"),
        ("h200/report", "NVIDIA H200", "2026-12-04T18:26:07+00:00"),
        ("h200/report/http", "NVIDIA H200", "2026-12-09T00:00:00+00:00"),  # a step's file, not a round
    ):
        path = tmp_path / "gpu" / folder / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = (
            {"gpu": {"name": card}, "steps": [], "created": created}
            if "http" not in folder
            else {"points": []}
        )
        path.write_text(json.dumps(doc))
    assert readme.gpu_rounds(tmp_path) == {
        "NVIDIA H100": tmp_path / "gpu" / "h100-again" / "report",
        "NVIDIA H200": tmp_path / "gpu" / "h200" / "report",
    }


def test_no_markers_is_an_error() -> None:
    with pytest.raises(ValueError, match="<!-- results -->"):
        readme.with_table("no table here", "x")
