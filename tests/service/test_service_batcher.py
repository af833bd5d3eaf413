"""Dynamic batcher unit tests: a numpy run function stands in for ONNX Runtime (no model)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from service.engine.batcher import BatchFailed, DynamicBatcher, TooLarge
from service.errors import InternalError, InvalidInput, Overloaded, ShuttingDown, Timeout, retry_after_s


class Recorder:
    """run_fn: logits = [sum of masked ids, row length], embedding = mask sum; records shapes."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.threads: set[str] = set()
        self.order: list[str] = []  # thread name of each run

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.shapes.append(ids.shape)
        self.threads.add(threading.current_thread().name)
        self.order.append(threading.current_thread().name)
        s = (ids * mask).sum(axis=1).astype(np.float32)
        n = mask.sum(axis=1).astype(np.float32)
        return np.stack([s, n], axis=1), n[:, None]


def rows(*lengths: int, start: int = 1) -> list[np.ndarray]:
    return [np.arange(start, start + n, dtype=np.int64) for n in lengths]


async def until(cond, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.001)


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An `async def` test run on a fresh event loop of its own (asyncio.run), as the batcher
    would be in a server, without an async pytest plugin."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def hold(b: DynamicBatcher) -> None:
    """Hold `b`'s worker (it sees no batch to run) until `release(b)`, so that queue states are
    deterministic: patched on this instance only, production code has no such switch."""
    b._pick = lambda now: None  # type: ignore[method-assign]
    b._next_deadline = lambda: None  # type: ignore[method-assign]


def release(b: DynamicBatcher) -> None:
    del b._pick, b._next_deadline
    b._changed.set()


@contextlib.asynccontextmanager
async def started(run_fn: Callable[..., Any], **options: Any) -> AsyncIterator[DynamicBatcher]:
    """Batcher "m" (worker threads named ort-m*) started for the block and stopped after it."""
    b = DynamicBatcher("m", run_fn, **options)
    await b.start()
    yield b
    await b.stop()


@run_async
async def test_concurrent_requests_merge_into_one_batch() -> None:
    rec = Recorder()
    async with started(rec, max_batch_size=4, max_queue_delay_ms=60_000, bucket_width=16) as b:
        # the batch fills up (4 rows) long before the 60 s delay: it runs at once
        results = await asyncio.gather(*(b.submit(rows(3 + i)) for i in range(4)))
        assert rec.shapes == [(4, 6)]
        for i, r in enumerate(results):
            assert r.batch_size == 4 and r.padded_length == 6
            n = 3 + i
            assert r.logits.tolist() == [[n * (n + 1) / 2, n]]  # padding never leaks in
        assert all(t.startswith("ort-m") for t in rec.threads)  # off the event loop
        assert b.stats.execution_count == 1 and b.stats.inference_count == 4


@run_async
async def test_pad_shape_pads_rows_and_length_without_changing_answers() -> None:
    """With the runtime's pad_shape (here the CUDA-graph grid) a batch runs at the grid's shape:
    padding rows attend to one position and are neither answered nor counted, and the known-quick
    inline path knows the padded shape after one run."""
    from service.runtime.shapes import ShapeGrid

    rec = Recorder()
    masks: list[np.ndarray] = []
    grid = ShapeGrid(max_rows=8, bucket_width=16, max_length=64)

    def run(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        masks.append(mask.copy())
        return rec(ids, mask)

    opts = dict(max_batch_size=8, max_queue_delay_ms=60_000, bucket_width=16, inline_compute_ms=1_000.0)
    async with started(run, pad_shape=grid.padded, **opts) as b:
        hold(b)
        pending = [asyncio.ensure_future(b.submit(rows(n))) for n in (3, 5, 7)]
        await until(lambda: b.queued_rows == 3)
        b.flush()
        release(b)
        results = await asyncio.gather(*pending)
        assert rec.shapes == [(4, 16)]
        assert masks[0][3].tolist() == [1] + [0] * 15 and masks[0][:3].sum() == 3 + 5 + 7
        for n, r in zip((3, 5, 7), results, strict=True):
            assert r.batch_size == 3 and r.padded_length == 16
            assert r.logits.tolist() == [[n * (n + 1) / 2, n]]
        assert b.stats.inference_count == 3 and b.stats.batch_sizes == {3: [1, b.stats.compute_ns]}
        await b.submit(rows(2, 2, 3))  # 3 rows again, now a known quick shape: on the loop
        assert rec.shapes[-1] == (4, 16) and rec.order[-1] == threading.current_thread().name


@run_async
async def test_delay_window_runs_a_partial_batch() -> None:
    async with started(Recorder(), max_batch_size=8, max_queue_delay_ms=150) as b:
        r = await b.submit(rows(2, 3))
        assert r.batch_size == 2 and r.logits.shape == (2, 2)
        # a lone request waits for company for the whole window when one is configured
        assert 140.0 <= r.queue_ms < 5_000.0
        assert r.compute_ms < 5_000.0 and b.stats.queue_ns >= 140e6


@run_async
async def test_default_is_the_idle_fast_path() -> None:
    """No delay window by default: a lone request that finds the model idle runs at once."""
    async with started(Recorder(), max_batch_size=8) as b:
        assert b.max_delay == 0.0
        r = await asyncio.wait_for(b.submit(rows(3)), 1.0)
        assert r.batch_size == 1 and r.queue_ms < 100.0


@run_async
async def test_oldest_full_bucket_runs_first() -> None:
    rec = Recorder()
    async with started(rec, max_batch_size=2, max_queue_delay_ms=60_000, bucket_width=16) as b:
        hold(b)
        older = [asyncio.create_task(b.submit(rows(40))) for _ in range(2)]  # bucket 3, full
        await until(lambda: b.queued_rows == 2)
        newer = [asyncio.create_task(b.submit(rows(3))) for _ in range(2)]  # bucket 1, full
        await until(lambda: b.queued_rows == 4)
        release(b)
        await asyncio.gather(*older, *newer)
        assert rec.shapes == [(2, 40), (2, 3)]


@run_async
async def test_zero_delay_runs_at_once_and_batches_what_queues_meanwhile() -> None:
    """max_queue_delay_ms=0: no waiting for company, yet rows that arrive while a batch
    computes run together next (what README promises for H2H_MAX_QUEUE_DELAY_MS=0)."""
    rec = Recorder()
    gate, entered = threading.Event(), threading.Event()

    def slow_first(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not rec.shapes:
            entered.set()
            gate.wait(5)  # hold the first batch until the others are queued
        return rec(ids, mask)

    async with started(slow_first, max_batch_size=8, max_queue_delay_ms=0) as b:
        first = asyncio.create_task(b.submit(rows(3)))
        await until(entered.is_set)  # a lone row runs at once, not after a delay window
        rest = [asyncio.create_task(b.submit(rows(3))) for _ in range(3)]
        await until(lambda: b.queued_rows == 3)
        gate.set()
        results = await asyncio.gather(first, *rest)
        assert rec.shapes == [(1, 3), (3, 3)]
        assert [r.batch_size for r in results] == [1, 3, 3, 3]


@run_async
async def test_rows_grouped_by_length_bucket() -> None:
    rec = Recorder()
    async with started(rec, max_batch_size=8, max_queue_delay_ms=60_000, bucket_width=16) as b:
        hold(b)
        tasks = [asyncio.create_task(b.submit(rows(n))) for n in (3, 40, 5, 45, 7)]
        await until(lambda: b.queued_rows == 5)
        b.flush()  # run what is queued now, bucket by bucket
        release(b)
        res = await asyncio.gather(*tasks)
        assert sorted(rec.shapes) == [(2, 45), (3, 7)]
        assert [r.padded_length for r in res] == [7, 45, 7, 45, 7]


@run_async
async def test_oversized_request_is_refused() -> None:
    async with started(Recorder(), max_batch_size=2) as b:
        with pytest.raises(TooLarge) as refused:
            await b.submit(rows(1, 1, 1))
        assert isinstance(refused.value, InvalidInput)  # a kind of the service's own refusal


@run_async
async def test_full_queue_rejects_at_once() -> None:
    async with started(Recorder(), max_batch_size=2, max_queue_rows=3, min_retry_after_s=2) as b:
        hold(b)
        waiting = [asyncio.create_task(b.submit(rows(2))) for _ in range(3)]
        await until(lambda: b.queued_rows == 3)
        with pytest.raises(Overloaded) as refused:
            await asyncio.wait_for(b.submit(rows(2)), 1.0)  # answered at once, not queued
        assert refused.value.retry_after == 2  # the service's one rule: never below H2H_RETRY_AFTER_S
        release(b)
        assert all(r.logits.shape == (1, 2) for r in await asyncio.gather(*waiting))


@run_async
async def test_request_timeout() -> None:
    async with started(Recorder(), max_batch_size=2, timeout_s=0.05) as b:
        hold(b)
        with pytest.raises(Timeout):
            await b.submit(rows(2))
        release(b)
        r = await b.submit(rows(2))  # the timed-out item is skipped, not run
        assert r.batch_size == 1


@run_async
async def test_drain_answers_every_accepted_request() -> None:
    rec = Recorder()
    async with started(rec, max_batch_size=4, max_queue_delay_ms=60_000) as b:
        hold(b)
        tasks = [asyncio.create_task(b.submit(rows(1 + i % 3))) for i in range(10)]
        await until(lambda: b.queued_rows == 10)
        drain = asyncio.create_task(b.drain(timeout=10))
        await asyncio.sleep(0)
        with pytest.raises(ShuttingDown):  # closed: new work refused
            await b.submit(rows(1))
        release(b)
        assert await drain is True  # no waiting for the 60 s delay window
        results = await asyncio.gather(*tasks)
        assert len(results) == 10 and sum(len(s) and s[0] for s in rec.shapes) == 10
        assert b.inflight == 0 and b.queued_rows == 0


@run_async
async def test_model_error_reaches_every_request_in_batch() -> None:
    def broken(ids, mask):  # noqa: ANN001, ANN202
        raise RuntimeError("boom")

    async with started(broken, max_batch_size=2, max_queue_delay_ms=60_000) as b:
        res = await asyncio.gather(b.submit(rows(1)), b.submit(rows(2)), return_exceptions=True)
        assert all(isinstance(r, BatchFailed) and isinstance(r.__cause__, RuntimeError) for r in res)
        assert all(isinstance(r, InternalError) for r in res)  # answered 500 with the request id
        assert str(res[0]) == "batch of 2 requests failed: RuntimeError"
        assert b.stats.fail_count == 2
        assert b.broken is None and b.accepting  # the worker goes on


@run_async
async def test_known_quick_shape_runs_inline_when_nothing_else_waits() -> None:
    """The thread hand-off is skipped for a shape measured below inline_compute_ms."""
    rec = Recorder()
    async with started(rec, max_batch_size=8, inline_compute_ms=1_000.0) as b:
        await b.submit(rows(3))  # shape unknown: worker thread
        await b.submit(rows(3))  # known quick, queue empty: on the event loop
        assert len(rec.shapes) == 2
        assert rec.order[0].startswith("ort-m") and rec.order[1] == threading.current_thread().name
    rec2 = Recorder()
    async with started(rec2, max_batch_size=8, inline_compute_ms=0.0) as off:
        for _ in range(3):
            await off.submit(rows(3))
        assert all(t.startswith("ort-m") for t in rec2.order) and len(rec2.order) == 3


@run_async
async def test_a_late_thread_hand_off_is_not_the_models_time() -> None:
    """A worker thread that wakes late (a busy host) neither counts as compute nor keeps a quick
    shape off the event loop: the next request of that shape runs inline."""
    rec = Recorder()
    async with started(rec, max_batch_size=8, inline_compute_ms=5.0) as b:
        executor = b._executor
        assert executor is not None
        submit = executor.submit

        def late(fn: Callable[..., Any], *args: Any) -> Any:
            time.sleep(0.02)  # the hand-off alone takes 4x the inline limit
            return submit(fn, *args)

        executor.submit = late  # type: ignore[method-assign]
        first = await b.submit(rows(3))  # shape unknown: the (late) worker thread
        assert first.compute_ms < 5.0
        await b.submit(rows(3))
        assert rec.order[0].startswith("ort-m") and rec.order[1] == threading.current_thread().name


@run_async
async def test_retry_after_follows_the_measured_drain_rate() -> None:
    def slow(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(0.05 * ids.shape[0])  # 20 rows/s
        return Recorder()(ids, mask)

    async with started(slow, max_batch_size=4, max_queue_rows=100, inline_compute_ms=0.0) as b:
        assert b.retry_after_s() == 1  # nothing measured yet
        await b.submit(rows(1, 1))
        hold(b)
        tasks = [asyncio.create_task(b.submit(rows(1, 1, 1, 1))) for _ in range(20)]  # 80 rows
        await until(lambda: b.queued_rows == 80)
        assert 3 <= b.retry_after_s() <= 5  # 80 rows at ~20 rows/s
        assert b.has_room(20) and not b.has_room(21)
        for t in tasks:
            t.cancel()
        release(b)


@run_async
async def test_requests_that_left_do_not_fill_a_bucket() -> None:
    """A cancelled (or timed-out) request still queued must not make its bucket look full."""
    rec = Recorder()
    async with started(rec, max_batch_size=2, max_queue_delay_ms=60_000) as b:
        hold(b)
        gone = asyncio.create_task(b.submit(rows(3)))
        await until(lambda: b.queued_rows == 1)
        gone.cancel()
        live = asyncio.create_task(b.submit(rows(3)))
        await until(lambda: b.queued_rows == 2)
        release(b)
        await asyncio.sleep(0.2)
        assert not live.done() and rec.shapes == []  # one live row: not a full batch of 2
        b.flush()
        assert (await live).batch_size == 1


@run_async
async def test_stop_leaves_no_queued_rows_behind() -> None:
    b = DynamicBatcher("m", Recorder(), max_batch_size=2)
    await b.start()
    hold(b)
    task = asyncio.create_task(b.submit(rows(3)))
    await until(lambda: b.queued_rows == 1)
    assert await b.stop(timeout=0.05) is False
    assert b.queued_rows == 0
    with pytest.raises(ShuttingDown):
        await task


def test_one_retry_after_rule() -> None:
    """service.errors.retry_after_s: the drain time at the measured rate, 1..60 s, never below
    the configured least (the front's draining answer uses it with nothing queued)."""
    assert retry_after_s(1) == 1 and retry_after_s(3) == 3 and retry_after_s(0) == 1
    assert retry_after_s(1, queued_rows=80, rows_per_s=20.0) == 4
    assert retry_after_s(5, queued_rows=80, rows_per_s=20.0) == 5
    assert retry_after_s(1, queued_rows=10_000, rows_per_s=1.0) == 60
