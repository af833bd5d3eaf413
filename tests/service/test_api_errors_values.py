"""A request that outlives `request_timeout_s` is answered 504 with a JSON error, on v1 and v2.

The model is made slow at the runtime boundary (ONNX Runtime's run sleeps first), and the
app is driven in-process over httpx's ASGI transport: no server, about half a second.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.runtime import session as runtime
from service.settings import ServiceSettings

TIMEOUT_S = 0.05
RUN_SLEEP_S = 0.4


async def _timed_out_requests(app: FastAPI) -> tuple[httpx.Response, httpx.Response, str, dict]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            v1 = await client.post("/v1/models/mha-tiny/predict", json={"input_ids": [[2, 3, 4]]})
            body = {"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [2, 3]}]}
            v2 = await client.post("/v2/models/mha-tiny/infer", json=body)
            metrics = (await client.get("/metrics")).text
            stats = (await client.get("/v2/models/mha-tiny/stats")).json()
    return v1, v2, metrics, stats


def test_request_timeout_is_504_with_json_body(tiny_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = runtime.OrtModel.run

    def slow_run(self, input_ids: np.ndarray, attention_mask: np.ndarray):  # noqa: ANN001, ANN202
        time.sleep(RUN_SLEEP_S)
        return real_run(self, input_ids, attention_mask)

    monkeypatch.setattr(runtime.OrtModel, "run", slow_run)
    settings = ServiceSettings(
        model_repository=tiny_repo,
        models=["mha-tiny"],
        provider="cpu",
        intra_op_threads=1,
        warmup=False,
        max_queue_delay_ms=0.0,
        request_timeout_s=TIMEOUT_S,
    )
    v1, v2, metrics, stats = asyncio.run(_timed_out_requests(create_app(settings, gpu_metrics=False)))

    assert v1.status_code == 504, v1.text
    assert v1.headers["content-type"] == "application/json"
    assert isinstance(v1.json()["error"], str) and v1.json()["error"]
    assert v2.status_code == 504, v2.text
    assert v2.headers["content-type"] == "application/json"
    assert set(v2.json()) == {"error"} and v2.json()["error"]

    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(metrics)
        for s in fam.samples
    }
    for route in ("/v1/models/{name}/predict", "/v2/models/{name}/infer"):
        labels = frozenset({"model": "mha-tiny", "route": route, "status": "504"}.items())
        assert samples.get(("h2h_requests_total", labels)) == 1, route
    assert (
        samples.get(("h2h_rejected_total", frozenset({"model": "mha-tiny", "reason": "timeout"}.items())))
        == 2
    )
    (st,) = stats["model_stats"]
    assert st["inference_stats"]["fail"]["count"] == 2 and st["inference_stats"]["success"]["count"] == 0


def test_each_refusal_has_its_protocols_status_and_body() -> None:
    """The core says what went wrong; v1 and v2 each say it with their own status and body."""
    from service.api import v1 as api_v1
    from service.api import v2 as api_v2
    from service.errors import (
        BodyTooLarge,
        InvalidInput,
        MalformedBody,
        ModelNotReady,
        Overloaded,
        ShuttingDown,
        Timeout,
        UnknownModel,
        UnknownVersion,
    )

    cases = [  # refusal, v1 status, v2 status
        (MalformedBody("malformed JSON: x", "body"), 400, 400),
        (InvalidInput("token id 9 is outside the vocabulary [0, 5)", "input_ids.0.1"), 422, 400),
        (BodyTooLarge(10), 413, 413),
        (UnknownModel("nope"), 404, 404),
        (UnknownVersion("7", "1"), 404, 404),
        (ModelNotReady.of("m", "ValueError: x"), 503, 503),
        (ShuttingDown(2), 503, 503),
        (Timeout("request timed out"), 504, 504),
        (Overloaded("queue of m is full (8 rows waiting)", 3), 429, 429),
    ]
    for exc, v1, v2 in cases:
        a, b = api_v1.PROTOCOL.error(exc, 429), api_v2.PROTOCOL.error(exc, 429)
        assert (a.status, b.status) == (v1, v2), exc
        assert orjson.loads(a.body) == {"error": exc.message, "field": exc.field}
        v2_message = (
            f"{exc.field}: {exc.message}" if isinstance(exc, InvalidInput) and exc.field else exc.message
        )
        assert orjson.loads(b.body) == {"error": v2_message}
        assert (
            a.headers.get("Retry-After")
            == b.headers.get("Retry-After")
            == (None if exc.retry_after is None else str(exc.retry_after))
        )
    assert api_v2.PROTOCOL.error(Overloaded("full", 1), 503).status == 503  # H2H_REJECT_STATUS
