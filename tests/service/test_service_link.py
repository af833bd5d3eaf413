"""The front's link and the engine's server over a real Unix socket, in one event loop: token
ids out and logits back equal the engine's own answer, refusals keep their class, status and
Retry-After, statistics and metrics cross, and a model whose batcher stops in the engine turns
not ready in the front."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from service.engine.core import Engine
from service.engine.server import EngineServer
from service.errors import ModelNotReady, Overloaded
from service.front.link import EngineLink
from service.front.registry import Registry
from tests.conftest import cpu_service_settings
from tests.service.test_service_batcher import run_async


@pytest.fixture
def endpoint(tmp_path: Path) -> str:
    return str(tmp_path / "engine.sock")


def test_link_and_server(tiny_repo: Path, endpoint: str) -> None:
    settings = cpu_service_settings(tiny_repo, models=["mha-tiny"], max_queue_rows=2, admission_wait_ms=0.0)

    @run_async
    async def go() -> None:
        engine = Engine(settings, gpu_metrics=False)
        await engine.start()
        server = EngineServer(engine, endpoint)
        server.bind()
        stop = asyncio.Event()
        serving = asyncio.create_task(server.serve(stop))
        front = Registry(settings, EngineLink(settings, endpoint))
        await front.start()
        try:
            entry = front.model("mha-tiny")
            rows = [np.array([5, 6, 7, 8], dtype=np.int64), np.array([9, 10], dtype=np.int64)]
            got = await front.infer(entry, rows, None, "rid-1")
            want = await engine.infer("mha-tiny", rows)
            np.testing.assert_allclose(got.logits, want.logits, rtol=1e-6)
            np.testing.assert_allclose(got.embedding, want.embedding, rtol=1e-6)
            assert got.batch_size == 2 and got.logits.dtype == np.float32
            with pytest.raises(Overloaded) as full:  # 3 rows never fit a 2-row queue
                await front.infer(entry, [*rows, rows[0]], None)
            assert full.value.retry_after >= 1 and "queue" not in (full.value.field or "")
            stats = await front.engine.statistics("mha-tiny")
            assert (
                stats is not None
                and stats.inference_count == 4
                and stats.batch_sizes == {2: [2, stats.batch_sizes[2][1]]}
            )
            names = {f.name for f in await front.engine.metric_families()}
            assert {"h2h_batch_size", "h2h_queue_depth", "h2h_model_ready"} <= names
            engine._broken("mha-tiny", RuntimeError("planted"))  # its batcher stopped
            with pytest.raises(ModelNotReady):
                await front.infer(entry, rows, None)
            await asyncio.sleep(0.2)  # the reply named a new state: the front read the models again
            with pytest.raises(ModelNotReady, match="batcher stopped"):
                front.model("mha-tiny")
        finally:
            await front.stop()
            stop.set()
            await serving

    go()
