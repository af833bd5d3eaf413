"""The result files' typed rows read every committed results.json, capacity.json and results.csv,
and write the same columns back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from contract.results import (
    CapacityRow,
    SweepRow,
    load,
    load_capacity,
    read_csv,
    to_csv,
    write,
    write_capacity,
)
from tests.conftest import ROOT

SWEEPS = sorted((ROOT / "docs").rglob("results.json"))
CAPACITIES = sorted((ROOT / "docs").rglob("capacity.json"))
CSVS = sorted((ROOT / "docs").rglob("results.csv"))


def kept(raw: object, read: object) -> bool:
    """Every key and value of `raw` is in `read` (which may add the columns raw lacks, as None)."""
    if isinstance(raw, dict):
        return isinstance(read, dict) and all(k in read and kept(v, read[k]) for k, v in raw.items())
    if isinstance(raw, list):
        return isinstance(read, list) and len(raw) == len(read) and all(map(kept, raw, read))
    return raw == read


def test_committed_results_of_each_kind_are_there() -> None:
    kinds = {p.parent.relative_to(ROOT / "docs").parts[0] for p in CSVS}
    assert {"loadtest-example", "paper-cpu", "gpu"} <= kinds and CAPACITIES
    assert any(json.loads(p.read_text()).get("points") for p in SWEEPS)


@pytest.mark.parametrize("path", [p for p in SWEEPS if "points" in json.loads(p.read_text())], ids=str)
def test_a_committed_sweep_reads_and_writes_back_the_same(path: Path, tmp_path: Path) -> None:
    data = load(path)
    raw = json.loads(path.read_text())["points"]
    assert len(data.points) == len(raw) > 0
    assert kept(json.loads(path.read_text()), data.model_dump(mode="json"))
    write(tmp_path, data.meta, data.points)
    assert load(tmp_path) == data
    header = (path.parent / "results.csv").read_text().splitlines()[0].split(",")
    written = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert written == SweepRow.columns()
    assert [c for c in written if c in header] == header  # older files lack newer columns, in the same order


@pytest.mark.parametrize("path", CAPACITIES, ids=str)
def test_a_committed_capacity_search_reads_and_writes_back_the_same(path: Path, tmp_path: Path) -> None:
    cap = load_capacity(path.parent)
    raw = json.loads(path.read_text())
    assert cap is not None and len(cap.rows) == len(raw["rows"]) and len(cap.probes) == len(raw["probes"])
    assert kept(raw, cap.model_dump(mode="json"))
    write_capacity(tmp_path, cap)
    written = (tmp_path / "capacity.csv").read_text().splitlines()[0].split(",")
    header = (path.parent / "capacity.csv").read_text().splitlines()[0].split(",")
    assert [c for c in written if c in header] == header  # older files lack newer columns, in the same order
    assert written == CapacityRow.columns()


@pytest.mark.parametrize("path", CSVS, ids=str)
def test_a_committed_csv_reads_with_its_older_columns(path: Path) -> None:
    """Files from before the client_* columns existed read, the missing ones as None."""
    rows = read_csv(path)
    with path.open() as f:
        raw = list(csv.DictReader(f))
    assert [(r.model, r.batch, r.seq, r.mode) for r in rows] == [
        (c["model"], int(c["batch"]), int(c["seq"]), c["mode"]) for c in raw
    ]
    assert all(r.p50_ms and r.p50_ms > 0 for r in rows)
    lines = to_csv(rows).splitlines()
    assert len(lines) == len(raw) + 1 and lines[0].split(",") == SweepRow.columns()


def test_a_row_with_a_misspelt_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        write(
            tmp_path,
            {},
            [
                {
                    "mode": "grpc",
                    "load": "closed",
                    "model": "m",
                    "arch": "mha",
                    "layers": 1,
                    "heads": 1,
                    "batch": 1,
                    "seq": 8,
                }
            ],
        )
    (tmp_path / "results.json").write_text(json.dumps({"points": [{"mode": "inproc"}]}))
    with pytest.raises(ValueError, match=r"results.json: points\.0\.model: Field required"):
        load(tmp_path)
