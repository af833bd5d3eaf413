"""The OpenAPI document tells the truth: schemathesis, every check, every operation, against a
live loopback server of the tiny pair; plus truncation, request ids and the JSON access log."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.http import accesslog
from service.settings import ServiceSettings
from tests.service.conftest import serve_in_thread

# Two kinds of rule no JSON Schema can state, each answered with the status its protocol uses:
# attention_mask rows as long as input_ids rows (v1: 422), and the binary tensor extension's
# raw bytes or a data length that must equal the product of the shape (v2: 400).
CONFIG = """
[generation]
max-examples = 30
[phases.stateful]
enabled = false
[parameters]
name = "mha-tiny"
version = "1"
[[operations]]
include-path-regex = "^/v1/models/[^/]+/predict$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "422", "429", "503"]
[[operations]]
include-path-regex = "/infer$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "429", "503"]
"""


@pytest.fixture(scope="module")
def live_url(tiny_repo: Path):  # noqa: ANN201
    s = ServiceSettings(model_repository=tiny_repo, provider="cpu", max_batch_size=8)
    with serve_in_thread(create_app(s, gpu_metrics=False)) as hostport:
        yield f"http://{hostport}"


def test_every_operation_keeps_its_documented_contract(live_url: str, tmp_path: Path) -> None:
    """schemathesis's own runner (its pytest plugin does not load under pytest 9), all checks."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{live_url}/openapi.json",
        "--checks",
        "all",
        "--seed",
        "1",
        "--no-color",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    tail = proc.stdout[-6000:]
    assert proc.returncode == 0, tail
    assert "Tested: 15" in proc.stdout or "Tested:" in proc.stdout, tail
    assert "failure" not in proc.stdout.split("SUMMARY")[-1].lower().replace("0 failures", ""), tail


def test_document_states_limits_and_error_bodies(live_url: str) -> None:
    doc = httpx.get(f"{live_url}/openapi.json").json()
    req = doc["components"]["schemas"]["PredictRequest"]
    assert req["properties"]["texts"]["maxItems"] == 8 and req["properties"]["texts"]["minItems"] == 1
    assert req["properties"]["input_ids"]["items"]["maxItems"] > 0
    assert len(req["oneOf"]) == 2
    predict = doc["paths"]["/v1/models/{name}/predict"]["post"]
    assert {"400", "404", "413", "422", "429", "503", "504"} <= set(predict["responses"])
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert "application/octet-stream" in infer["requestBody"]["content"]
    assert "422" not in infer["responses"]
    assert all(p["in"] == "path" for p in infer.get("parameters", []))  # no `version` query parameter
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_long_text_is_refused_unless_truncate_is_asked(live_url: str) -> None:
    long_text = "dog " * 500
    url = f"{live_url}/v1/models/mha-tiny/predict"
    r = httpx.post(url, json={"texts": ["a cat", long_text]})
    assert r.status_code == 422 and r.json()["field"] == "texts.1"
    assert "500 tokens" in r.json()["error"]
    r = httpx.post(url, json={"texts": ["a cat", long_text], "truncate": True})
    assert r.status_code == 200, r.text
    short, cut = r.json()["predictions"]
    assert short["truncated"] is False and short["tokens"] == 2
    assert cut["truncated"] is True and 0 < cut["tokens"] < 500
    r = httpx.post(url, json={"input_ids": [[5, 6, 7, 0]], "attention_mask": [[1, 1, 1, 0]]})
    assert r.json()["predictions"][0]["tokens"] == 3 and r.json()["predictions"][0]["truncated"] is False


def test_request_id_is_echoed_or_made(live_url: str) -> None:
    url = f"{live_url}/v1/models/mha-tiny/predict"
    r = httpx.post(url, json={"texts": ["a cat"]}, headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    made = httpx.post(url, json={"texts": ["a cat"]}, headers={"x-request-id": "bad id with space"})
    assert len(made.headers["x-request-id"]) == 32 and made.headers["x-request-id"] != "bad id with space"
    other = httpx.get(f"{live_url}/v2/models/nope/ready")
    assert other.status_code == 404 and len(other.headers["x-request-id"]) == 32


def test_json_access_log_line_per_request(tiny_repo: Path, tmp_path: Path) -> None:
    from tests.service.test_service_api import AppRunner, settings_for

    runner = AppRunner(create_app(settings_for(tiny_repo, access_log_json=True), gpu_metrics=False))
    handler = accesslog.access_log.handlers[0]
    seen = io.StringIO()
    old = handler.setStream(seen)
    try:
        runner.post(
            "/v1/models/mha-tiny/predict", json={"texts": ["a secret cat"]}, headers={"x-request-id": "r-1"}
        )
        runner.post("/v1/models/nope/predict", json={"texts": ["x"]}, headers={"x-request-id": "r-2"})
    finally:
        handler.setStream(old)
        runner.close()
    lines = [json.loads(x) for x in seen.getvalue().splitlines()]
    assert [x["request_id"] for x in lines] == ["r-1", "r-2"]
    first, second = lines
    assert first["route"] == "/v1/models/{name}/predict" and first["model"] == "mha-tiny"
    assert first["status"] == 200 and first["method"] == "POST" and first["latency_ms"] > 0
    assert second["status"] == 404 and second["model"] == "_unknown"
    assert set(first) == {"ts", "method", "route", "model", "status", "latency_ms", "request_id"}
    assert "secret" not in seen.getvalue()  # never bodies


def test_large_text_batches_are_tokenised_off_the_event_loop(
    live_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from service.api import v1 as api_v1

    offloaded: list[str] = []
    real = asyncio.to_thread

    async def spy(fn, /, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        offloaded.append(getattr(fn, "__name__", "?"))
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(api_v1.asyncio, "to_thread", spy)
    url = f"{live_url}/v1/models/mha-tiny/predict"
    assert httpx.post(url, json={"texts": ["a small dog"]}).status_code == 200
    assert offloaded == []  # small batches stay on the loop
    big = "dog " * (api_v1.OFFLOAD_TEXT_CHARS // 4 + 10)
    r = httpx.post(url, json={"texts": [big], "truncate": True})
    assert r.status_code == 200 and r.json()["predictions"][0]["truncated"] is True
    assert offloaded == ["encode_texts"]
    r = httpx.post(url, json={"texts": [big]})
    assert r.status_code == 422 and f"{len(big.split())} tokens" in r.json()["error"]
