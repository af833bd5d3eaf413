"""Real HTTP: tritonclient against uvicorn in a thread, and SIGTERM drain of `python -m service`."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.app import create_app
from tests.conftest import cpu_service_settings, start_service, wait_until
from tests.service.conftest import serve_in_thread


@pytest.fixture(scope="module")
def server(tiny_repo: Path):  # noqa: ANN201
    settings = cpu_service_settings(tiny_repo)
    with serve_in_thread(create_app(settings, gpu_metrics=False)) as hostport:
        yield hostport


def test_tritonclient_round_trip(server: str, tiny_repo: Path) -> None:
    import tritonclient.http as tc
    from tritonclient.utils import InferenceServerException

    from contract.tokenizer import Tokenizer

    client = tc.InferenceServerClient(url=server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mha-tiny") and not client.is_model_ready("nope")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("sha-tiny")
    assert {t["name"] for t in meta["inputs"]} == {"input_ids", "attention_mask"}
    assert client.get_model_config("sha-tiny")["max_batch_size"] == 8

    tok = Tokenizer.load(tiny_repo / "mha-tiny" / "tokenizer.json")
    ids, mask = (
        np.array(x, dtype=np.int64) for x in tok.encode_batch(["a small domesticated carnivore", "a tree"])
    )

    def infer(binary: bool, outputs: list[str] | None = None):  # noqa: ANN202
        inputs = [
            tc.InferInput("input_ids", list(ids.shape), "INT64"),
            tc.InferInput("attention_mask", list(mask.shape), "INT64"),
        ]
        inputs[0].set_data_from_numpy(ids, binary_data=binary)
        inputs[1].set_data_from_numpy(mask, binary_data=binary)
        outs = [tc.InferRequestedOutput(o, binary_data=binary) for o in outputs] if outputs else None
        return client.infer("mha-tiny", inputs, outputs=outs, request_id="r1")

    default = infer(True)  # unmodified tritonclient: binary tensors both ways
    logits = default.as_numpy("logits")
    emb = default.as_numpy("embedding")
    assert logits.dtype == np.float32 and logits.shape[0] == 2 and emb.shape[0] == 2
    assert default.get_response()["id"] == "r1"
    as_json = infer(False, ["logits", "embedding"])
    np.testing.assert_allclose(as_json.as_numpy("logits"), logits, rtol=1e-6, atol=1e-6)
    only = infer(True, ["embedding"])
    assert only.as_numpy("logits") is None
    np.testing.assert_allclose(only.as_numpy("embedding"), emb, rtol=1e-6, atol=1e-6)

    v1 = httpx.post(
        f"http://{server}/v1/models/mha-tiny/predict",
        json={"texts": ["a small domesticated carnivore", "a tree"]},
    ).json()
    assert [p["label_id"] for p in v1["predictions"]] == logits.argmax(axis=1).tolist()

    stats = client.get_inference_statistics("mha-tiny")["model_stats"][0]
    # four sequential requests of two rows each: three tritonclient infers and one v1 predict
    assert stats["inference_count"] == 8 and stats["execution_count"] == 4
    assert int(stats["inference_stats"]["success"]["count"]) == 4

    with pytest.raises(InferenceServerException, match="unknown model"):
        bad = tc.InferInput("input_ids", [1, 1], "INT64")
        bad.set_data_from_numpy(np.array([[2]], dtype=np.int64))
        client.infer("nope", [bad])
    with pytest.raises(InferenceServerException, match="vocabulary"):
        bad = tc.InferInput("input_ids", [1, 1], "INT64")
        bad.set_data_from_numpy(np.array([[10**9]], dtype=np.int64))
        client.infer("mha-tiny", [bad])
    client.close()


def test_sigterm_drains_accepted_requests(tiny_repo: Path, tmp_path: Path) -> None:
    """Requests waiting in a 60 s batching window are answered when SIGTERM arrives; exit 0."""
    env = {
        "H2H_PROVIDER": "cpu",
        "H2H_INTRA_OP_THREADS": "1",
        "H2H_MAX_BATCH_SIZE": "8",
        "H2H_MAX_QUEUE_DELAY_MS": "60000",
        "H2H_SHUTDOWN_GRACE_S": "30",
    }
    log = tmp_path / "server.log"
    proc, hostport = start_service(tiny_repo, env, log, "--models", "mha-tiny")
    base = f"http://{hostport}"
    try:
        deadline = time.monotonic() + 90
        wait_until(
            "server ready",
            lambda: httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200,
            90,
            proc,
            log,
        )

        results: list[httpx.Response | Exception] = []

        def call(i: int) -> None:
            try:
                results.append(
                    httpx.post(
                        f"{base}/v1/models/mha-tiny/predict", json={"texts": [f"a dog {i}"]}, timeout=60
                    )
                )
            except Exception as exc:  # reported by the assertion below
                results.append(exc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        while 'h2h_queue_depth{model="mha-tiny"} 3.0' not in httpx.get(f"{base}/metrics").text:
            assert time.monotonic() < deadline + 30, "requests never queued"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(results) == 3
    for r in results:
        assert isinstance(r, httpx.Response) and r.status_code == 200, (r, log.read_text())
        assert r.json()["timing"]["batch_size"] == 3
    text = log.read_text()
    assert '"event": "started"' in text and '"provider": "CPUExecutionProvider"' in text
    assert '"parity": "proven"' in text and '"variant": "model.onnx"' in text
