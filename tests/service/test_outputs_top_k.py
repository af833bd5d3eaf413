"""`top_k` at or above the model's label count answers every label once, best first (v1, through
the app over the tiny model): the k is capped at the label count, not one short of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.manifest import load_manifest
from service.app import create_app
from tests.service.test_service_api import AppRunner, settings_for


@pytest.fixture(scope="module")
def runner(tiny_repo: Path):  # noqa: ANN201
    r = AppRunner(create_app(settings_for(tiny_repo), gpu_metrics=False))
    yield r
    r.close()


@pytest.mark.parametrize("extra", [0, 1, 1000])
def test_top_k_at_or_above_the_label_count_returns_every_label(
    runner: AppRunner, tiny_repo: Path, extra: int
) -> None:
    labels = load_manifest(tiny_repo / "mha-tiny").labels
    top_k = min(len(labels) + extra, 1000)
    body = {"texts": ["a small domesticated carnivore", "a tree"], "top_k": top_k}
    r = runner.post("/v1/models/mha-tiny/predict", json=body)
    assert r.status_code == 200, r.text
    for p in r.json()["predictions"]:
        top = p["top_k"]
        assert sorted(t["label_id"] for t in top) == list(range(len(labels)))
        assert [t["label"] for t in top] == [labels[t["label_id"]] for t in top]
        scores = [t["score"] for t in top]
        assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-6
        assert top[0]["label_id"] == p["label_id"]
