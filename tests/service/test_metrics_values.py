"""Metric values and v2 /stats counts after known traffic, read from /metrics and the API.

One fresh app for this module and one fixed set of requests, so every count is exact:
a test here fails when a series is present but never observed, or observed wrongly.
Each request runs alone (sequential calls), so each executes as its own batch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from tests.conftest import cpu_service_settings

PREDICT = "/v1/models/{name}/predict"
INFER = "/v2/models/{name}/infer"

V2_IDS = {
    "name": "input_ids",
    "shape": [2, 6],
    "datatype": "INT64",
    "data": [2, 3, 4, 0, 0, 0, 5, 6, 7, 8, 9, 10],
}
V2_MASK = {
    "name": "attention_mask",
    "shape": [2, 6],
    "datatype": "INT64",
    "data": [1, 1, 1, 0, 0, 0] + [1] * 6,
}

# (route, model in URL, body, expected status); batches noted as rows x padded length, real tokens
TRAFFIC = [
    # rows of lengths 3 and 5 padded to 5: 2 rows, 10 slots, 8 real tokens, padding 0.2
    (PREDICT, "mha-tiny", {"input_ids": [[2, 3, 4], [5, 6, 7, 8, 9]]}, 200),
    # one row of 4: nothing padded
    (PREDICT, "mha-tiny", {"input_ids": [[2, 3, 4, 5]]}, 200),
    # v2, trailing masked positions trimmed: rows of 3 and 6 padded to 6, 9 real tokens, padding 0.25
    (INFER, "mha-tiny", {"inputs": [V2_IDS, V2_MASK]}, 200),
    # rejected by validation (id outside the vocabulary): never reaches the batcher
    (PREDICT, "mha-tiny", {"input_ids": [[2, 10**6]]}, 422),
    # unknown model: counted under "_unknown", never under the name sent
    (PREDICT, "nope", {"input_ids": [[2]]}, 404),
    # one row of 2 on the other model: its series are separate
    (PREDICT, "sha-tiny", {"input_ids": [[2, 3]]}, 200),
]


def value(families: dict[tuple, float], name: str, **labels: str) -> float | None:
    return families.get((name, frozenset(labels.items())))


def parse(text: str) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


async def _send_traffic(app: FastAPI) -> tuple[str, dict, list[int]]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            statuses = []
            for route, name, body, _ in TRAFFIC:
                r = await client.post(route.replace("{name}", name), json=body)
                statuses.append(r.status_code)
            stats = {n: (await client.get(f"/v2/models/{n}/stats")).json() for n in ("mha-tiny", "sha-tiny")}
            text = (await client.get("/metrics")).text
    return text, stats, statuses


@pytest.fixture(scope="module")
def scraped(tiny_repo: Path) -> tuple[dict[tuple, float], dict, list[int]]:
    """Send TRAFFIC once to a fresh app; return parsed /metrics, both /stats bodies, statuses."""
    settings = cpu_service_settings(tiny_repo, max_batch_size=4, request_timeout_s=30.0)
    text, stats, statuses = asyncio.run(_send_traffic(create_app(settings, gpu_metrics=False)))
    return parse(text), stats, statuses


def test_traffic_answered_as_planned(scraped) -> None:  # noqa: ANN001
    assert scraped[2] == [status for *_, status in TRAFFIC]


def test_request_count_and_duration_per_model_route_status(scraped) -> None:  # noqa: ANN001
    m = scraped[0]
    expected = {
        ("mha-tiny", PREDICT, "200"): 2,
        ("mha-tiny", INFER, "200"): 1,
        ("mha-tiny", PREDICT, "422"): 1,
        ("_unknown", PREDICT, "404"): 1,
        ("sha-tiny", PREDICT, "200"): 1,
    }
    for (model, route, status), n in expected.items():
        labels = {"model": model, "route": route, "status": status}
        assert value(m, "h2h_requests_total", **labels) == n, labels
        # the histogram must be observed once per request, not merely declared
        assert value(m, "h2h_request_duration_seconds_count", **labels) == n, labels
        assert value(m, "h2h_request_duration_seconds_bucket", le="+Inf", **labels) == n, labels
        assert value(m, "h2h_request_duration_seconds_sum", **labels) > 0, labels
    assert value(m, "h2h_requests_total", model="nope", route=PREDICT, status="404") is None


def test_padding_fraction_and_tokens_for_known_batches(scraped) -> None:  # noqa: ANN001
    m = scraped[0]
    mha = {"model": "mha-tiny"}
    # mha-tiny ran three batches: 2x5 (8 real), 1x4 (4 real), 2x6 (9 real)
    assert value(m, "h2h_tokens_total", **mha) == 8 + 4 + 9
    assert value(m, "h2h_padding_fraction_count", **mha) == 3
    assert value(m, "h2h_padding_fraction_sum", **mha) == pytest.approx(0.2 + 0.0 + 0.25)
    assert value(m, "h2h_padding_fraction_bucket", le="0.0", **mha) == 1  # the unpadded batch
    assert value(m, "h2h_padding_fraction_bucket", le="0.1", **mha) == 1
    assert value(m, "h2h_padding_fraction_bucket", le="0.2", **mha) == 2
    assert value(m, "h2h_padding_fraction_bucket", le="0.3", **mha) == 3
    assert value(m, "h2h_sequence_length_sum", **mha) == 5 + 4 + 6
    assert value(m, "h2h_sequence_length_count", **mha) == 3
    sha = {"model": "sha-tiny"}
    assert value(m, "h2h_tokens_total", **sha) == 2
    assert value(m, "h2h_padding_fraction_sum", **sha) == 0.0
    assert value(m, "h2h_padding_fraction_count", **sha) == 1


def test_batch_size_queue_wait_and_compute_observations(scraped) -> None:  # noqa: ANN001
    m = scraped[0]
    mha = {"model": "mha-tiny"}
    assert value(m, "h2h_batch_size_count", **mha) == 3
    assert value(m, "h2h_batch_size_sum", **mha) == 2 + 1 + 2
    assert value(m, "h2h_batch_size_bucket", le="1.0", **mha) == 1
    assert value(m, "h2h_batch_size_bucket", le="2.0", **mha) == 3
    assert value(m, "h2h_queue_wait_seconds_count", **mha) == 3  # one per request that was queued
    assert value(m, "h2h_compute_seconds_count", **mha) == 3  # one per batch
    assert value(m, "h2h_compute_seconds_sum", **mha) > 0
    sha = {"model": "sha-tiny"}
    assert value(m, "h2h_batch_size_sum", **sha) == 1
    assert value(m, "h2h_queue_wait_seconds_count", **sha) == 1
    # everything was answered: nothing waits and nothing is in flight
    for model in ("mha-tiny", "sha-tiny"):
        assert value(m, "h2h_queue_depth", model=model) == 0
        assert value(m, "h2h_inflight_requests", model=model) == 0


def test_v2_stats_counts_exact(scraped) -> None:  # noqa: ANN001
    (mha,) = scraped[1]["mha-tiny"]["model_stats"]
    assert mha["name"] == "mha-tiny"
    assert mha["inference_count"] == 5  # rows: 2 + 1 + 2 (the 422 never ran)
    assert mha["execution_count"] == 3  # batches
    st = mha["inference_stats"]
    assert st["success"]["count"] == 3 and st["success"]["ns"] > 0
    assert st["fail"] == {"count": 0, "ns": 0}
    assert st["compute_infer"]["count"] == 3 and st["compute_infer"]["ns"] > 0
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in mha["batch_stats"]] == [(1, 1), (2, 2)]
    assert mha["last_inference"] > 0
    (sha,) = scraped[1]["sha-tiny"]["model_stats"]
    assert sha["inference_count"] == sha["execution_count"] == 1
    assert sha["inference_stats"]["success"]["count"] == 1
