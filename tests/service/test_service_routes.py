"""The inference route table: a route added as one row is served by the front layer, admitted
(full queue, draining) and documented, with nothing else to edit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.api import v1 as api_v1
from service.api.schemas import PredictRequest, PredictResponse
from service.app import INFERENCE_ROUTES, create_app
from service.front.registry import Registry
from service.http.bodies import RawRequest, RawResponse
from service.http.routes import InferenceRoute, RouteTable
from tests.service.test_service_api import MAX_QUEUE, AppRunner, settings_for
from tests.service.test_service_batcher import hold, release

ECHO_PATH = "/v1/models/mha-tiny/echo"


async def echo_raw(svc: Registry, req: RawRequest) -> RawResponse:
    """The texts back, with the model that would have read them."""
    body = req.parse(PredictRequest)
    return RawResponse.json({"model": svc.model(req.name).name, "texts": body.texts})


ECHO = InferenceRoute(
    "POST",
    "/v1/models/{name}/echo",
    api_v1.PROTOCOL,
    PredictRequest,
    PredictResponse,
    echo_raw,
    name="echo",
    description="The texts back.",
    errors=api_v1.WORK_ERRORS,
    tags=["v1"],
)


@pytest.fixture(scope="module")
def runner(tiny_repo: Path) -> Iterator[AppRunner]:
    settings = settings_for(tiny_repo, models=["mha-tiny"], admission_wait_ms=0.0)
    r = AppRunner(create_app(settings, gpu_metrics=False, routes=(*INFERENCE_ROUTES, ECHO)))
    yield r
    r.close()


def test_a_new_row_is_served_with_its_protocols_refusals(runner: AppRunner) -> None:
    r = runner.post(ECHO_PATH, json={"texts": ["a dog"]})
    assert (r.status_code, r.json()) == (200, {"model": "mha-tiny", "texts": ["a dog"]})
    r = runner.post("/v1/models/nope/echo", json={"texts": ["a"]})
    assert (r.status_code, r.json()) == (404, {"error": "unknown model 'nope'", "field": "name"})
    r = runner.post(ECHO_PATH, content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = runner.post(ECHO_PATH, json={"texts": ["a" * 9000]})
    assert r.status_code == 413 and r.json()["field"] == "body"
    r = runner.get(ECHO_PATH)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    metrics = runner.get("/metrics").text
    assert 'h2h_requests_total{model="mha-tiny",route="/v1/models/{name}/echo",status="200"} 1.0' in metrics


def test_a_new_row_is_documented(runner: AppRunner) -> None:
    op = runner.get("/openapi.json").json()["paths"]["/v1/models/{name}/echo"]["post"]
    assert op["operationId"] == "echo_v1_models__name__echo_post" and op["description"] == "The texts back."
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}
    assert {"200", "404", "413", "422", "429", "503"} <= set(op["responses"])
    assert [p["name"] for p in op["parameters"]] == ["name"]


def test_a_new_row_is_admitted_before_its_body_is_read(runner: AppRunner) -> None:
    b = runner.service.engine.engine.models["mha-tiny"].batcher

    async def full_queue_then_echo() -> int:
        hold(b)
        rows = [np.arange(1, 3, dtype=np.int64)]
        tasks = [asyncio.ensure_future(b.submit(rows)) for _ in range(MAX_QUEUE)]
        while b.queued_rows < MAX_QUEUE:
            await asyncio.sleep(0.001)
        try:
            r = await runner.client.post(ECHO_PATH, json={"texts": ["a"]})
            return r.status_code
        finally:
            release(b)
            await asyncio.gather(*tasks)

    assert runner.call(full_queue_then_echo()) == 429
    runner.service.begin_shutdown()  # what SIGTERM does: the new row is refused like the others
    r = runner.post(ECHO_PATH, json={"texts": ["a"]})
    assert r.status_code == 503 and r.headers["connection"] == "close"


def test_table_lookup() -> None:
    table = RouteTable(INFERENCE_ROUTES)
    m = table.match("POST", "/v2/models/m/versions/1/infer")
    assert m is not None and (m.name, m.version, m.wrong_method, m.slash) == ("m", "1", False, False)
    m = table.match("POST", "/v1/compare/")
    assert m is not None and m.slash and m.row.path == "/v1/compare"
    m = table.match("GET", "/v1/models/m/predict")
    assert m is not None and m.wrong_method
    assert table.match("POST", "/v1/models/m") is None and table.match("GET", "/") is None
