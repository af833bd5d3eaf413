"""Every batch the engine runs holds at most `max_batch_size` rows, however the queue is made up
(requests of 1..max rows, one bucket or several, drained at once or arriving together), and every
request is answered with its own rows."""

from __future__ import annotations

import asyncio
import random

from tests.service.test_service_batcher import Recorder, hold, release, rows, run_async, started, until

MAX = 5


def _requests(seed: int, n: int) -> list[list]:
    rng = random.Random(seed)
    return [rows(*(rng.randint(1, 40) for _ in range(rng.randint(1, MAX)))) for _ in range(n)]


async def _check(results: list, requests: list[list], rec: Recorder) -> None:
    assert rec.shapes and all(r <= MAX for r, _ in rec.shapes), rec.shapes
    for req, res in zip(requests, results, strict=True):
        assert res.batch_size <= MAX and res.logits.shape[0] == len(req)
        assert res.logits[:, 1].tolist() == [len(r) for r in req]  # its own rows, in order


@run_async
async def test_a_queue_drained_at_once_runs_in_batches_of_at_most_max_rows() -> None:
    rec = Recorder()
    async with started(rec, max_batch_size=MAX, max_queue_delay_ms=60_000, bucket_width=64) as b:
        hold(b)
        requests = _requests(1, 30)
        pending = [asyncio.ensure_future(b.submit(r)) for r in requests]
        await until(lambda: b.queued_rows == sum(len(r) for r in requests))
        b.flush()  # drain mode: everything queued runs now, still in bounded batches
        release(b)
        await _check(await asyncio.gather(*pending), requests, rec)


@run_async
async def test_requests_arriving_together_run_in_batches_of_at_most_max_rows() -> None:
    rec = Recorder()
    async with started(rec, max_batch_size=MAX, max_queue_delay_ms=5, bucket_width=8) as b:
        requests = _requests(2, 60)
        await _check(await asyncio.gather(*(b.submit(r) for r in requests)), requests, rec)
