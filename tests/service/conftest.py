"""Helpers the service's tests share: a real server in a thread, logits over KServe v2."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from loadtest.processes import free_port

if TYPE_CHECKING:
    import numpy as np


@contextlib.contextmanager
def serve_in_thread(app) -> Iterator[str]:  # noqa: ANN001
    """Real HTTP on loopback: uvicorn in a thread with the app's lifespan; yields host:port."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(30)


def v2_logits(base: str, repo: Path, model: str, texts: list[str]) -> np.ndarray:
    """Logits through KServe v2 (token ids in, FP32 logits out): the tensors themselves."""
    import httpx
    import numpy as np

    from contract.tokenizer import Tokenizer

    ids, mask = Tokenizer.load(repo / model / "tokenizer.json").encode_batch(texts)
    shape = [len(ids), len(ids[0])]
    inputs = [
        {"name": n, "shape": shape, "datatype": "INT64", "data": np.ravel(v).tolist()}
        for n, v in (("input_ids", ids), ("attention_mask", mask))
    ]
    r = httpx.post(
        f"http://{base}/v2/models/{model}/infer",
        json={"inputs": inputs, "outputs": [{"name": "logits"}]},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
