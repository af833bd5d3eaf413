"""The app against the tiny MHA/SHA model repository, in-process over httpx's ASGI transport.

One app per module (a background event loop holds its lifespan); batch formation is made
deterministic with the batcher's hold()/release() helpers (tests/service/test_service_batcher.py), never with sleeps.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from contract.manifest import load_manifest
from service.api.v2codec import HEADER
from service.app import create_app
from service.settings import ServiceSettings
from tests.service.test_service_batcher import hold, release

MAX_BATCH = 4
MAX_QUEUE = 8
MAX_BODY = 8192


class AppRunner:
    """Runs an app's lifespan on a private event loop; `call(coro)` runs on that loop."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app
        self.service = app.state.registry
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._lifespan = app.router.lifespan_context(app)
        self.call(self._lifespan.__aenter__())
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")

    def call(self, coro, timeout: float = 60.0):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def get(self, path: str, **kw) -> httpx.Response:  # noqa: ANN003
        return self.call(self.client.get(path, **kw))

    def post(self, path: str, **kw) -> httpx.Response:  # noqa: ANN003
        return self.call(self.client.post(path, **kw))

    def close(self) -> None:
        self.call(self.client.aclose())
        self.call(self._lifespan.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def make_repo(tiny_repo: Path, dest: Path) -> Path:
    """tiny_repo plus a tampered model (sha256 mismatch) and folders that are not models."""
    repo = dest / "repo"
    shutil.copytree(tiny_repo, repo)
    broken = repo / "broken-tiny"
    shutil.copytree(tiny_repo / "sha-tiny", broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["name"] = "broken-tiny"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with open(
        broken / manifest["variants"][manifest.get("default_variant", "model.onnx")]["file"], "ab"
    ) as fh:
        fh.write(b"\0")
    (repo / ".staging.partial").mkdir()
    (repo / "Not A Model").mkdir()
    return repo


def settings_for(repo: Path, **kw) -> ServiceSettings:  # noqa: ANN003
    base = dict(
        model_repository=repo,
        provider="cpu",
        intra_op_threads=1,
        inter_op_threads=1,
        max_batch_size=MAX_BATCH,
        max_queue_rows=MAX_QUEUE,
        max_queue_delay_ms=1.0,
        max_body_bytes=MAX_BODY,
        request_timeout_s=30.0,
    )
    base.update(kw)
    return ServiceSettings(**base)


@pytest.fixture(scope="module")
def repo(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tiny_repo, tmp_path_factory.mktemp("svc"))


@pytest.fixture(scope="module")
def runner(repo: Path):  # noqa: ANN201
    r = AppRunner(create_app(settings_for(repo), gpu_metrics=False))
    yield r
    r.close()


@pytest.fixture(scope="module")
def mha(repo: Path):  # noqa: ANN201
    return load_manifest(repo / "mha-tiny")


# -- model loading and metadata --------------------------------------------------------------
def test_models_listed_with_state_and_provider(runner: AppRunner) -> None:
    r = runner.get("/v1/models")
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    assert set(models) == {"mha-tiny", "sha-tiny", "broken-tiny"}  # hidden/invalid folders skipped
    for name in ("mha-tiny", "sha-tiny"):
        assert models[name]["state"] == "ready"
        assert models[name]["provider"] == "CPUExecutionProvider"
        assert models[name]["manifest"]["arch"] == name[:3]
    assert models["broken-tiny"]["state"] == "failed"
    assert "sha256" in models["broken-tiny"]["error"]
    assert runner.get("/v1/models/mha-tiny").json()["variant"]
    assert runner.get("/v1/models/nope").status_code == 404


def test_v2_health_and_metadata(runner: AppRunner, mha) -> None:  # noqa: ANN001
    assert runner.get("/v2/health/live").status_code == 200
    assert runner.get("/v2/health/ready").status_code == 200  # one failed model does not block
    meta = runner.get("/v2").json()
    assert meta["name"] == "headtohead" and "binary_tensor_data" in meta["extensions"]
    m = runner.get("/v2/models/mha-tiny").json()
    assert m["name"] == "mha-tiny" and m["platform"] == "onnxruntime_onnx"
    assert {t["name"] for t in m["inputs"]} == {"input_ids", "attention_mask"}
    assert runner.get("/v2/models/mha-tiny/versions/1").status_code == 200
    assert runner.get("/v2/models/mha-tiny/versions/7").status_code == 404
    assert runner.get("/v2/models/mha-tiny/ready").status_code == 200
    r = runner.get("/v2/models/broken-tiny/ready")
    assert r.status_code == 503 and "sha256" in r.json()["error"]
    r = runner.get("/v2/models/nope/ready")
    assert r.status_code == 404 and set(r.json()) == {"error"}
    cfg = runner.get("/v2/models/sha-tiny/config").json()
    assert cfg["max_batch_size"] == MAX_BATCH and cfg["input"][0]["data_type"] == "TYPE_INT64"
    stats = runner.get("/v2/models/sha-tiny/stats").json()
    assert stats["model_stats"][0]["name"] == "sha-tiny"


def test_v2_failed_model_has_no_metadata(runner: AppRunner) -> None:
    """KServe v2: a failed metadata request is an error status; Triton answers one for a model that
    did not load. Ours is the readiness route's 503, with the load error."""
    ready = runner.get("/v2/models/broken-tiny/ready")
    assert ready.status_code == 503 and "sha256" in ready.json()["error"]
    for path in (
        "/v2/models/broken-tiny",
        "/v2/models/broken-tiny/versions/1",
        "/v2/models/broken-tiny/config",
    ):
        r = runner.get(path)
        assert (r.status_code, r.json()) == (503, ready.json()), path
    r = runner.get("/v2/models/broken-tiny/versions/2")
    assert r.status_code == 404 and "version" in r.json()["error"]  # the version is checked first
    assert runner.get("/v1/models/broken-tiny").json()["state"] == "failed"  # v1 lists it, with its error


def test_inference_routes_are_one_table_and_fastapi_has_none_of_them() -> None:
    from fastapi.routing import APIRoute

    from service import app
    from service.api import v1 as api_v1
    from service.api import v2 as api_v2

    rows = {r.path: r for r in app.INFERENCE_ROUTES}
    assert set(rows) == {
        "/v1/models/{name}/predict",
        "/v1/compare",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
    assert rows["/v1/models/{name}/predict"].handler is api_v1.predict_raw
    assert rows["/v1/compare"].handler is api_v1.compare_raw
    assert rows["/v2/models/{name}/versions/{version}/infer"].handler is api_v2.infer_raw
    assert rows["/v2/models/{name}/infer"].protocol is api_v2.PROTOCOL
    assert {r.method for r in rows.values()} == {"POST"}
    control = [r.path for api in (api_v1, api_v2) for r in api.router.routes if isinstance(r, APIRoute)]
    assert not set(control) & set(rows)  # no FastAPI route body that the front layer shadows


def test_docs(runner: AppRunner) -> None:
    assert runner.get("/docs").status_code == 200
    paths = runner.get("/openapi.json").json()["paths"]
    assert "/v1/models/{name}/predict" in paths and "/v2/models/{name}/infer" in paths


# -- v1 ----------------------------------------------------------------------------------------
def test_predict_texts(runner: AppRunner, mha, repo: Path) -> None:  # noqa: ANN001
    from contract.tokenizer import Tokenizer

    texts = ["a small domesticated carnivore", "a tall tree"]
    ids, _ = Tokenizer.load(repo / "mha-tiny" / "tokenizer.json").encode_batch(texts)
    r = runner.post(
        "/v1/models/mha-tiny/predict",
        json={"texts": texts, "top_k": 2, "return_embedding": True},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "mha-tiny" and len(body["predictions"]) == 2
    p = body["predictions"][0]
    assert p["label"] in mha.labels and p["label"] == mha.labels[p["label_id"]]
    assert len(p["top_k"]) == 2 and p["top_k"][0]["score"] >= p["top_k"][1]["score"]
    assert 0 < p["score"] <= 1 and len(p["embedding"]) == mha.d_model
    t = body["timing"]
    assert t["batch_size"] == 2 and t["padded_length"] == len(ids[0])  # alone: its own batch
    assert t["compute_ms"] > 0 and t["total_ms"] >= t["compute_ms"]


def test_predict_ids_matches_texts(runner: AppRunner, repo: Path) -> None:
    from contract.tokenizer import Tokenizer

    tok = Tokenizer.load(repo / "sha-tiny" / "tokenizer.json")
    ids, mask = tok.encode_batch(["a small domesticated carnivore", "tree"])
    a = runner.post("/v1/models/sha-tiny/predict", json={"input_ids": ids, "attention_mask": mask}).json()
    b = runner.post(
        "/v1/models/sha-tiny/predict", json={"texts": ["a small domesticated carnivore", "tree"]}
    ).json()
    for pa, pb in zip(a["predictions"], b["predictions"], strict=True):
        assert pa["label_id"] == pb["label_id"]
        assert pa["score"] == pytest.approx(pb["score"], abs=1e-5)


def test_compare_runs_every_model(runner: AppRunner) -> None:
    r = runner.post("/v1/compare", json={"texts": ["a small domesticated carnivore"]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert set(results) == {"mha-tiny", "sha-tiny"}
    for name, res in results.items():
        assert res["model"] == name and res["timing"]["compute_ms"] > 0
    r = runner.post("/v1/compare", json={"texts": ["x"], "models": ["sha-tiny"]})
    assert set(r.json()["results"]) == {"sha-tiny"}
    r = runner.post("/v1/compare", json={"texts": ["x"], "models": ["sha-tiny", "nope"]})
    assert r.status_code == 404 and r.json()["field"] == "models.1"


def test_each_text_is_tokenised_once_per_tokenizer(
    runner: AppRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contract.tokenizer import Tokenizer

    models = runner.service.models
    shared = models["mha-tiny"].tokenizer.to_dict() == models["sha-tiny"].tokenizer.to_dict()
    assert (models["mha-tiny"].tokenizer is models["sha-tiny"].tokenizer) == shared  # one object if equal
    calls: list[str] = []
    real = Tokenizer.tokenize

    def counting(self: Tokenizer, text: str) -> list[str]:
        calls.append(text)
        return real(self, text)

    monkeypatch.setattr(Tokenizer, "tokenize", counting)
    texts = ["a small dog", "the oak tree"]
    assert runner.post("/v1/models/mha-tiny/predict", json={"texts": texts}).status_code == 200
    assert sorted(calls) == sorted(texts)  # counting the tokens and encoding share one pass
    calls.clear()
    r = runner.post("/v1/compare", json={"texts": texts})
    assert r.status_code == 200 and set(r.json()["results"]) == {"mha-tiny", "sha-tiny"}
    assert sorted(calls) == sorted(texts * (1 if shared else 2))
    for name in ("mha-tiny", "sha-tiny"):  # the shared tokens give each model what predict gives it
        alone = runner.post(f"/v1/models/{name}/predict", json={"texts": texts}).json()["predictions"]
        assert [p["label_id"] for p in r.json()["results"][name]["predictions"]] == [
            p["label_id"] for p in alone
        ]


def _raw(body: bytes, content_type: str = "application/json") -> dict:
    """Request keywords that send `body` as it is, so the JSON parser itself meets the bytes."""
    return {"content": body, "headers": {"content-type": content_type}}


def _bad_v1_json_cases(mha) -> list[tuple[str, dict, int, str]]:  # noqa: ANN001
    """Well-formed JSON whose fields break the v1 schema or the model's limits."""
    too_long = [[2] * (mha.max_sequence_length + 1)]
    return [
        ("wrong type texts", {"json": {"texts": "abc"}}, 422, "texts"),
        ("wrong type id", {"json": {"input_ids": [["a"]]}}, 422, "input_ids.0.0"),
        ("float id", {"json": {"input_ids": [[1.5]]}}, 422, "input_ids.0.0"),
        ("wrong type top_k", {"json": {"texts": ["a"], "top_k": "x"}}, 422, "top_k"),
        ("unknown field", {"json": {"texts": ["a"], "bogus": 1}}, 422, "bogus"),
        ("neither input", {"json": {"top_k": 2}}, 422, "texts"),
        ("both inputs", {"json": {"texts": ["a"], "input_ids": [[2]]}}, 422, "texts"),
        ("mask without ids", {"json": {"texts": ["a"], "attention_mask": [[1]]}}, 422, "attention_mask"),
        ("empty batch texts", {"json": {"texts": []}}, 422, "texts"),
        ("empty batch ids", {"json": {"input_ids": []}}, 422, "input_ids"),
        ("empty row", {"json": {"input_ids": [[]]}}, 422, "input_ids.0"),
        ("batch above limit", {"json": {"texts": ["a"] * (MAX_BATCH + 1)}}, 422, "texts"),
        ("sequence above max", {"json": {"input_ids": too_long}}, 422, "input_ids.0"),
        ("id above vocab", {"json": {"input_ids": [[2, mha.vocab_size]]}}, 422, "input_ids.0.1"),
        ("negative id", {"json": {"input_ids": [[-1]]}}, 422, "input_ids.0.0"),
        ("huge id", {"json": {"input_ids": [[2**70]]}}, 422, "input_ids.0.0"),
        ("mask rows", {"json": {"input_ids": [[2], [3]], "attention_mask": [[1]]}}, 422, "attention_mask"),
        ("mask width", {"json": {"input_ids": [[2, 3]], "attention_mask": [[1]]}}, 422, "attention_mask.0"),
        (
            "mask value",
            {"json": {"input_ids": [[2, 3]], "attention_mask": [[1, 2]]}},
            422,
            "attention_mask.0.1",
        ),
        (
            "mask gap",
            {"json": {"input_ids": [[2, 3, 4]], "attention_mask": [[1, 0, 1]]}},
            422,
            "attention_mask.0.1",
        ),
        (
            "mask leading padding",
            {"json": {"input_ids": [[2, 3]], "attention_mask": [[0, 1]]}},
            422,
            "attention_mask.0.0",
        ),
        (
            "mask all zero",
            {"json": {"input_ids": [[2, 3]], "attention_mask": [[0, 0]]}},
            422,
            "attention_mask.0",
        ),
    ]


def _bad_v1_cases(mha) -> list[tuple[str, dict, int, str]]:  # noqa: ANN001
    return [
        *_bad_v1_json_cases(mha),
        ("malformed JSON", _raw(b'{"texts": ['), 400, "body"),
        ("non-UTF-8 bytes", _raw(b'{"texts": ["\xff\xfe"]}'), 400, "body"),
        ("lone surrogate", _raw(b'{"texts": ["\\udcff"]}'), 422, "texts.0"),
        ("body over limit", {"json": {"texts": ["word " * MAX_BODY]}}, 413, "body"),
        ("not an object", {"json": [1, 2]}, 422, "body"),
        ("form content type", _raw(b'{"texts": ["a"]}', "application/x-www-form-urlencoded"), 422, "body"),
    ]


def test_bad_inputs_v1(runner: AppRunner, mha) -> None:  # noqa: ANN001
    for label, kw, status, field in _bad_v1_cases(mha):
        r = runner.post("/v1/models/mha-tiny/predict", **kw)
        assert r.status_code == status, (label, r.status_code, r.text)
        body = r.json()
        assert body["field"] == field, (label, body)
        assert isinstance(body["error"], str) and body["error"], label


def test_unknown_and_unready_models(runner: AppRunner) -> None:
    r = runner.post("/v1/models/nope/predict", json={"texts": ["a"]})
    assert r.status_code == 404 and r.json()["field"] == "name"
    r = runner.post("/v1/models/broken-tiny/predict", json={"texts": ["a"]})
    assert r.status_code == 503 and r.json()["field"] == "name"
    # names never reach the filesystem: traversal attempts are just unknown names / routes
    for path in (
        "/v1/models/..%2F..%2Fetc%2Fpasswd/predict",
        "/v1/models/../predict",
        "/v1/models/%2E%2E/predict",
    ):
        r = runner.post(path, json={"texts": ["a"]})
        assert r.status_code in (404, 405), (path, r.status_code)
        assert "error" in r.json()


# -- v2 infer (JSON tensors) ----------------------------------------------------------------------
def _v2(ids: list[list[int]], mask: list[list[int]] | None = None, **extra) -> dict:  # noqa: ANN003
    b, s = len(ids), len(ids[0]) if ids else 0
    inputs = [
        {"name": "input_ids", "shape": [b, s], "datatype": "INT64", "data": [x for r in ids for x in r]}
    ]
    if mask is not None:
        inputs.append({"name": "attention_mask", "shape": [b, s], "datatype": "INT64", "data": mask})
    return {"inputs": inputs, **extra}


def test_v2_infer_json(runner: AppRunner, mha) -> None:  # noqa: ANN001
    body = _v2([[2, 3, 4], [5, 6, 0]], [[1, 1, 1], [1, 1, 0]], id="req-1")
    r = runner.post("/v2/models/mha-tiny/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_name"] == "mha-tiny" and out["id"] == "req-1"
    tensors = {t["name"]: t for t in out["outputs"]}
    assert tensors["logits"]["shape"] == [2, len(mha.labels)] and tensors["logits"]["datatype"] == "FP32"
    assert tensors["embedding"]["shape"] == [2, mha.d_model]
    assert len(tensors["logits"]["data"]) == 2 * len(mha.labels)
    assert out["parameters"]["batch_size"] == 2 and out["parameters"]["padded_length"] == 3
    v1 = runner.post("/v1/models/mha-tiny/predict", json={"input_ids": [[5, 6]]}).json()
    logits = np.array(tensors["logits"]["data"]).reshape(2, -1)
    assert int(logits[1].argmax()) == v1["predictions"][0]["label_id"]  # padding changes nothing
    only = runner.post("/v2/models/mha-tiny/infer", json=_v2([[2, 3]], outputs=[{"name": "logits"}])).json()
    assert [t["name"] for t in only["outputs"]] == ["logits"]
    nested = _v2([[2, 3]])
    nested["inputs"][0]["data"] = [[2, 3]]
    assert runner.post("/v2/models/mha-tiny/versions/1/infer", json=nested).status_code == 200


def _bad_v2_json_cases(mha) -> list[tuple[str, dict, int]]:  # noqa: ANN001
    """Parseable v2 bodies whose tensors break the protocol or the model's limits."""
    fp32 = _v2([[2, 3]])
    fp32["inputs"][0]["datatype"] = "FP32"
    short = _v2([[2, 3]])
    short["inputs"][0]["shape"] = [1, 3]
    floats = _v2([[2, 3]])
    floats["inputs"][0]["data"] = [2.5, 3]
    mask = {"name": "attention_mask", "shape": [1, 1], "datatype": "INT64", "data": [1]}
    return [
        ("no inputs", {"json": {"inputs": []}}, 400),
        ("missing input_ids", {"json": {"inputs": [mask]}}, 400),
        (
            "unknown input",
            {"json": {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}},
            400,
        ),
        ("fp32 ids", {"json": fp32}, 400),
        ("float data", {"json": floats}, 400),
        ("count mismatch", {"json": short}, 400),
        (
            "empty batch",
            {"json": {"inputs": [{"name": "input_ids", "shape": [0, 3], "datatype": "INT64", "data": []}]}},
            400,
        ),
        ("batch above limit", {"json": _v2([[2]] * (MAX_BATCH + 1))}, 400),
        ("sequence above max", {"json": _v2([[2] * (mha.max_sequence_length + 1)])}, 400),
        ("id above vocab", {"json": _v2([[mha.vocab_size]])}, 400),
        ("mask shape", {"json": {"inputs": _v2([[2, 3]])["inputs"] + [mask]}}, 400),
        (
            "1-D ids",
            {"json": {"inputs": [{"name": "input_ids", "shape": [2], "datatype": "INT64", "data": [2, 3]}]}},
            400,
        ),
        ("unknown output", {"json": _v2([[2]], outputs=[{"name": "nope"}])}, 400),
    ]


def _bad_v2_binary_cases() -> list[tuple[str, dict, int]]:
    """Binary-extension bodies whose header and trailing bytes disagree."""
    binary = {
        "name": "input_ids",
        "shape": [1, 2],
        "datatype": "INT64",
        "parameters": {"binary_data_size": 8},
    }
    head = json.dumps({"inputs": [binary]}).encode()
    binary["parameters"]["binary_data_size"] = 16
    head16 = json.dumps({"inputs": [binary]}).encode()
    return [
        ("bad binary size", {"content": head + b"\0" * 8, "headers": {HEADER: str(len(head))}}, 400),
        (
            "binary bytes left over",
            {"content": head16 + b"\0" * 24, "headers": {HEADER: str(len(head16))}},
            400,
        ),
        (
            "header length too big",
            {"content": b"{}", "headers": {"Inference-Header-Content-Length": "99"}},
            400,
        ),
    ]


def test_bad_inputs_v2(runner: AppRunner, mha) -> None:  # noqa: ANN001
    cases = [
        ("malformed", _raw(b'{"inputs": ['), 400),
        ("non-UTF-8", _raw(b'{"inputs": "\xff"}'), 400),
        *_bad_v2_json_cases(mha),
        *_bad_v2_binary_cases(),
        ("body over limit", {"json": _v2([[2] * (MAX_BODY // 2)])}, 413),
    ]
    for label, kw, status in cases:
        r = runner.post("/v2/models/mha-tiny/infer", **kw)
        assert r.status_code == status, (label, r.status_code, r.text)
        assert set(r.json()) == {"error"} and r.json()["error"], label
    r = runner.post("/v2/models/nope/infer", json=_v2([[2]]))
    assert r.status_code == 404 and set(r.json()) == {"error"}
    r = runner.post("/v2/models/broken-tiny/infer", json=_v2([[2]]))
    assert r.status_code == 503 and set(r.json()) == {"error"}


# -- batching, back-pressure ---------------------------------------------------------------------
def test_concurrent_requests_share_a_batch(runner: AppRunner) -> None:
    b = runner.service.engine.engine.models["mha-tiny"].batcher

    async def go() -> list[httpx.Response]:
        hold(b)  # hold the worker until all three are queued, so the batch is deterministic
        try:
            tasks = [
                asyncio.create_task(runner.client.post("/v1/models/mha-tiny/predict", json={"texts": [t]}))
                for t in ("a dog", "a small cat", "the oak tree")
            ]
            while b.queued_rows < 3:
                await asyncio.sleep(0.001)
        finally:
            release(b)
        return await asyncio.gather(*tasks)

    for r in runner.call(go()):
        assert r.status_code == 200, r.text
        assert r.json()["timing"]["batch_size"] == 3


def test_full_queue_answers_429_at_once(runner: AppRunner) -> None:
    b = runner.service.engine.engine.models["sha-tiny"].batcher
    four = {"texts": ["a dog", "a cat", "a tree", "a rock"]}

    async def go() -> tuple[list[httpx.Response], httpx.Response]:
        hold(b)
        try:
            tasks = [
                asyncio.create_task(runner.client.post("/v1/models/sha-tiny/predict", json=four))
                for _ in range(MAX_QUEUE // MAX_BATCH)
            ]
            while b.queued_rows < MAX_QUEUE:
                await asyncio.sleep(0.001)
            extra = await asyncio.wait_for(
                runner.client.post("/v1/models/sha-tiny/predict", json={"texts": ["one more"]}), 5
            )
        finally:
            release(b)
        return await asyncio.gather(*tasks), extra

    accepted, extra = runner.call(go())
    assert extra.status_code == 429 and extra.headers["retry-after"] == "1"
    assert extra.json()["error"]
    assert all(r.status_code == 200 for r in accepted)
    metrics = runner.get("/metrics").text
    assert 'h2h_rejected_total{model="sha-tiny",reason="queue_full"} 1.0' in metrics


# -- metrics -------------------------------------------------------------------------------------
def _samples(text: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, *sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_metrics_names_and_labels(runner: AppRunner) -> None:
    before = _samples(runner.get("/metrics").text)
    runner.post("/v1/models/mha-tiny/predict", json={"texts": ["a dog"]})
    runner.post("/v1/models/nope/predict", json={"texts": ["a dog"]})
    runner.post("/v1/compare", json={"texts": ["a dog"]})
    text = runner.get("/metrics").text
    after = _samples(text)

    def delta(name: str, **labels: str) -> float:
        key = (name, *sorted(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    for model, route, status in (
        ("mha-tiny", "/v1/models/{name}/predict", "200"),
        ("_unknown", "/v1/models/{name}/predict", "404"),
        ("_none", "/v1/compare", "200"),
    ):
        labels = {"model": model, "route": route, "status": status}
        assert delta("h2h_requests_total", **labels) == 1, labels
        assert delta("h2h_request_duration_seconds_count", **labels) == 1, labels  # observed, not just named
    # one-row batches: mha-tiny ran the predict and its share of the compare, sha-tiny the compare
    for model, batches in (("mha-tiny", 2), ("sha-tiny", 1)):
        assert delta("h2h_batch_size_count", model=model) == batches, model
        assert delta("h2h_batch_size_sum", model=model) == batches, model
        assert delta("h2h_queue_wait_seconds_count", model=model) == batches, model
        assert delta("h2h_padding_fraction_sum", model=model) == 0.0, model  # one row: no padding
    for name in (
        "h2h_requests_total",
        "h2h_request_duration_seconds_bucket",
        "h2h_queue_wait_seconds_bucket",
        "h2h_compute_seconds_bucket",
        "h2h_batch_size_bucket",
        "h2h_sequence_length_bucket",
        "h2h_padding_fraction_bucket",
        "h2h_tokens_total",
        "h2h_queue_depth",
        "h2h_inflight_requests",
        "h2h_rejected_total",
        "h2h_model_ready",
        "h2h_model_info",
    ):
        assert f"\n{name}" in text, name
    assert 'h2h_requests_total{model="mha-tiny",route="/v1/models/{name}/predict",status="200"}' in text
    assert 'h2h_requests_total{model="_unknown",route="/v1/models/{name}/predict",status="404"}' in text
    assert 'h2h_requests_total{model="_none",route="/v1/compare",status="200"}' in text
    assert 'h2h_model_ready{model="broken-tiny"} 0.0' in text
    assert 'h2h_model_ready{model="mha-tiny"} 1.0' in text
    assert 'provider="CPUExecutionProvider"' in text and 'arch="sha"' in text
    assert "nope" not in text  # user input never becomes a label
    assert "h2h_gpu_" not in text  # no NVML here (and gpu metrics off for this app)


# -- shutdown ------------------------------------------------------------------------------------
def test_drain_on_shutdown_loses_no_accepted_request(repo: Path) -> None:
    """What SIGTERM does (Registry.begin_shutdown), then the lifespan's drain, in-process."""
    r = AppRunner(
        create_app(settings_for(repo, models=["mha-tiny"], max_queue_delay_ms=60_000), gpu_metrics=False)
    )
    svc, b = r.service, r.service.engine.engine.models["mha-tiny"].batcher
    try:

        async def go() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
            hold(b)
            tasks = [
                asyncio.create_task(
                    r.client.post("/v1/models/mha-tiny/predict", json={"texts": [f"word {i}"]})
                )
                for i in range(3)
            ]
            while b.queued_rows < 3:
                await asyncio.sleep(0.001)
            svc.begin_shutdown()  # the SIGTERM hook: stop accepting, flush the queue
            await asyncio.sleep(0)
            late = await r.client.post("/v1/models/mha-tiny/predict", json={"texts": ["late"]})
            ready = await r.client.get("/v2/health/ready")
            release(b)
            return await asyncio.gather(*tasks), late, ready

        accepted, late, ready = r.call(go(), timeout=30)
        assert [x.status_code for x in accepted] == [200, 200, 200]  # no 60 s delay window wait
        assert late.status_code == 503 and late.headers["retry-after"] == "1"
        assert ready.status_code == 503
    finally:
        r.close()
    assert b.inflight == 0 and b.queued_rows == 0
