"""loadtest.gpu.crossover: SHA/MHA against tokens per batch, the level a fit says it is heading
for, the crossover where that fit reaches 1, and the command over results folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.results import write
from loadtest.gpu import crossover
from tests.loadtest.conftest import inproc_pair_rows

PAIR = (("mha-base-random", "mha", 12, 12), ("sha-base-random", "sha", 144, 1))
SHAPES = [(b, q) for b in (1, 4, 16, 64) for q in (32, 128, 512)]


def _rows(ratio_of_tokens, shapes=SHAPES):  # noqa: ANN001, ANN202
    return inproc_pair_rows({(b, q): ratio_of_tokens(b * q) for b, q in shapes}, lambda b, q: 1.0, PAIR)


def test_a_ratio_levelling_off_above_one_is_no_crossover():
    s = crossover.series("fp32", _rows(lambda t: 1.2 + 400 / t))
    assert (
        s.fit.asymptote == pytest.approx(1.2)
        and s.fit.c == pytest.approx(400)
        and s.fit.crossover_tokens is None
    )
    assert crossover.sentence(s) == (
        "fp32: SHA/MHA 13.70 at 32 tokens per batch (batch 1 x seq 32) to 1.21 at 32,768 (batch 64 x seq 512); "
        "fitted over the 6 largest shapes (from 2,048 tokens) the ratio levels off at 1.20, so no crossover is in sight."
    )


def test_a_ratio_heading_below_one_names_the_crossover():
    s = crossover.series("fp16", _rows(lambda t: 0.8 + 100 / t))
    assert s.fit.crossover_tokens == pytest.approx(500)
    said = crossover.sentence(s)
    assert "SHA is cheaper from 512 tokens per batch (batch 16 x seq 32)" in said
    assert said.endswith("the ratio reaches 1 at about 500 tokens per batch.")


def test_a_ratio_that_does_not_follow_the_fit_is_said_to_scatter():
    s = crossover.series("eager", _rows(lambda t: 3.0 if t in (2048, 32768) else 4.5))
    assert "does not fall along ratio = a + c / tokens but scatters between 3.00 and 4.50, all above 1." in (
        crossover.sentence(s)
    )


def test_the_command_joins_folders_of_one_way_and_plots(tmp_path: Path):
    long, short = [(b, 128) for b in (1, 4, 16, 32)], [(b, q) for b in (1, 4, 16, 32) for q in (16, 64)]
    write(
        tmp_path / "a",
        {},
        [r.model_copy(update={"variant": "model.onnx"}) for r in _rows(lambda t: 1.1 + 10 / t, long)],
    )
    write(
        tmp_path / "b",
        {},
        [r.model_copy(update={"variant": "model.onnx"}) for r in _rows(lambda t: 1.1 + 10 / t, short)],
    )
    assert (
        crossover.main(
            [str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "x"), "--machine", "box"]
        )
        == 0
    )
    md = (tmp_path / "x" / crossover.MD_NAME).read_text()
    assert md.startswith("# SHA/MHA against tokens per batch (box)") and md.count("\n- ") == 1
    assert (
        "- model.onnx: SHA/MHA 1.73 at 16 tokens per batch" in md and "fitted over the 6 largest shapes" in md
    )
    assert (tmp_path / "x" / crossover.PNG_NAME).stat().st_size > 1000
    with pytest.raises(SystemExit) as exc:
        crossover.main([str(tmp_path / "nothing")])
    assert exc.value.code == 2
