"""contract.manifest is the whole contract: export writes only declared fields, unknown ones fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from contract.manifest import Manifest


def _raw(tiny_repo: Path) -> dict:
    return json.loads((tiny_repo / "mha-tiny" / "manifest.json").read_text())


def test_export_writes_only_declared_fields(tiny_repo: Path) -> None:
    raw = _raw(tiny_repo)
    assert set(raw) <= set(Manifest.model_fields)
    assert {"fused_operators", "export_seconds"} <= set(raw)
    m = Manifest.model_validate(raw)
    assert m.fused_operators == {} and set(m.export_seconds) == {"export", "parity"}


@pytest.mark.parametrize("where", ["manifest", "variant", "parity", "input"])
def test_unknown_fields_are_refused(tiny_repo: Path, where: str) -> None:
    raw = _raw(tiny_repo)
    variant = raw["variants"]["model.onnx"]
    target = {"manifest": raw, "variant": variant, "parity": variant["parity"], "input": raw["inputs"][0]}
    target[where]["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        Manifest.model_validate(raw)


def test_older_manifest_without_export_record_still_loads(tiny_repo: Path) -> None:
    raw = _raw(tiny_repo)
    for key in ("fused_operators", "export_seconds", "versions", "pad_id"):
        del raw[key]
    for key in ("near_ties", "decisive_disagreements", "rows"):
        del raw["variants"]["model.onnx"]["parity"][key]
    m = Manifest.model_validate(raw)
    assert m.fused_operators == {} and m.export_seconds == {} and m.variants["model.onnx"].parity.rows is None
