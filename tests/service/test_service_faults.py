"""Failure containment, by fault injection: a raise planted at one boundary (the metrics
observer, padding, the model run, the tokenizer, the batcher's worker loop) against the real app
over the tiny repository. Each fault answers the requests it hit with a 500 naming the request
id (logged once, counted), and the next requests are served; a worker that cannot go on turns
its model not ready (503) at once, never a 30 s wait for a timeout."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.tokenizer import Tokenizer
from service.app import create_app
from service.engine.batcher import DynamicBatcher
from service.metrics import EngineMetrics
from service.runtime.session import OrtModel
from tests.service.test_service_api import AppRunner, settings_for

PREDICT = "/v1/models/mha-tiny/predict"
INFER = "/v2/models/mha-tiny/infer"
V2_BODY = {"inputs": [{"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [5, 6, 7]}]}


def raise_once(
    original: Callable[..., Any], when: Callable[..., bool] = lambda *a: True
) -> Callable[..., Any]:
    """`original`, except that its first call for which `when(*args)` holds raises."""
    fired: list[bool] = []

    def planted(*args: Any, **kw: Any) -> Any:
        if not fired and when(*args):
            fired.append(True)
            raise RuntimeError("planted fault")
        return original(*args, **kw)

    return planted


@pytest.fixture
def serve(tiny_repo: Path) -> Iterator[Callable[[], AppRunner]]:
    """Starts the app over mha-tiny alone (after the test planted its fault); closed after."""
    runners: list[AppRunner] = []

    def start() -> AppRunner:
        settings = settings_for(tiny_repo, models=["mha-tiny"], request_timeout_s=30.0)
        runners.append(AppRunner(create_app(settings, gpu_metrics=False)))
        return runners[-1]

    yield start
    for r in runners:
        r.close()


def metric(runner: AppRunner, name: str) -> float:
    m = re.search(rf'^{name}\{{model="mha-tiny"\}} (\S+)$', runner.get("/metrics").text, re.M)
    return float(m.group(1)) if m else 0.0


def assert_500_with_request_id(r: Any, v2: bool = False) -> str:
    assert r.status_code == 500, r.text
    rid = r.headers["x-request-id"]
    assert set(r.json()) == ({"error"} if v2 else {"error", "field"})
    assert r.json()["error"].endswith(f"(request id {rid})"), r.json()
    return rid


def failure_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def assert_contained(runner: AppRunner, caplog: pytest.LogCaptureFixture, cause_in: str) -> None:
    """The fault's request got 500, its cause logged once, and the service goes on serving."""
    logs = failure_logs(caplog)
    assert len(logs) == 1, [rec.getMessage() for rec in logs]
    assert logs[0].exc_info is not None and "planted fault" in str(logs[0].exc_info[1].__str__())
    assert cause_in in logs[0].getMessage()
    for _ in range(3):
        assert runner.post(PREDICT, json={"texts": ["a dog"]}).status_code == 200
    assert runner.post(INFER, json=V2_BODY).status_code == 200
    assert runner.get("/v2/health/ready").status_code == 200
    assert metric(runner, "h2h_model_ready") == 1.0


# (boundary, method, when it raises, the request that meets it): each fails one batch
BATCH_FAULTS = {
    "observer": (EngineMetrics, "batch", None, (INFER, V2_BODY)),
    "padding": (DynamicBatcher, "_pad", None, (PREDICT, {"texts": ["a dog"]})),
    # the warm-up run (4 tokens) passes; the request's run (5 tokens) raises
    "model_run": (
        OrtModel,
        "run",
        lambda _s, ids, _m: ids.shape[1] > 4,
        (PREDICT, {"input_ids": [[5, 6, 7, 8, 9]]}),
    ),
}


@pytest.mark.parametrize("where", sorted(BATCH_FAULTS))
def test_fault_injection_in_a_batch(where: str, serve, monkeypatch, caplog) -> None:  # noqa: ANN001
    cls, method, when, (path, body) = BATCH_FAULTS[where]
    monkeypatch.setattr(cls, method, raise_once(getattr(cls, method), when or (lambda *a: True)))
    runner = serve()
    rid = assert_500_with_request_id(runner.post(path, json=body), v2=path == INFER)
    assert_contained(runner, caplog, "batch of 1 requests failed")
    assert f"(requests {rid})" in failure_logs(caplog)[0].getMessage()  # the cause's line names the request
    assert metric(runner, "h2h_batch_failures_total") == 1.0


def test_fault_injection_tokenizer(serve, monkeypatch, caplog) -> None:  # noqa: ANN001
    monkeypatch.setattr(Tokenizer, "tokenize", raise_once(Tokenizer.tokenize))
    runner = serve()
    assert_500_with_request_id(runner.post(PREDICT, json={"texts": ["a dog"]}))
    assert_contained(runner, caplog, "unhandled error on /v1/models/{name}/predict")
    assert metric(runner, "h2h_batch_failures_total") == 0.0  # no batch ever held it


def test_fault_injection_worker_loop_turns_the_model_not_ready(serve, monkeypatch, caplog) -> None:  # noqa: ANN001
    """A fault outside any batch ends the worker: the queued request fails at once, and the model
    says it is not ready (503 on its routes and on readiness, h2h_model_ready 0)."""
    monkeypatch.setattr(
        DynamicBatcher, "_pick", raise_once(DynamicBatcher._pick, lambda self, _now: bool(self._buckets))
    )
    runner = serve()
    t0 = time.perf_counter()
    assert_500_with_request_id(runner.post(PREDICT, json={"texts": ["a dog"]}))
    assert time.perf_counter() - t0 < 5.0  # not the 30 s request timeout
    logs = failure_logs(caplog)
    assert len(logs) == 1 and "batcher worker stopped" in logs[0].getMessage()
    r = runner.post(PREDICT, json={"texts": ["a dog"]})
    assert r.status_code == 503 and "batcher stopped: RuntimeError: planted fault" in r.json()["error"]
    assert runner.post(INFER, json=V2_BODY).status_code == 503
    assert runner.get("/v2/models/mha-tiny/ready").status_code == 503
    assert runner.get("/v2/health/ready").status_code == 503
    assert metric(runner, "h2h_model_ready") == 0.0
    assert runner.get("/v1/models/mha-tiny").json()["state"] == "failed"
