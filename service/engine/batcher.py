"""Dynamic batcher: one asyncio queue per model, batches grouped by sequence-length bucket.

Pure asyncio + numpy (no FastAPI, no ONNX Runtime) so it is unit-testable with any
`run_fn(input_ids, attention_mask) -> (logits, embedding)`.

- A request of b rows counts b toward `max_batch_size`; requests larger than that are refused
  up front (`TooLarge`), by the caller's validation normally.
- Each row is trimmed of trailing masked positions and filed under the bucket
  `ceil(length / bucket_width)`; a batch holds rows of one bucket only and is padded to its
  longest row, so little padding is computed, or to the shape `pad_shape` names when given (the
  runtime's: on CUDA one of a bounded set of captured graph shapes). Padding rows are [PAD]
  attending to their first position only, and are dropped from the answers.
- A batch runs when its bucket holds `max_batch_size` rows, or when its oldest request has
  waited `max_queue_delay_ms`, whichever first; the oldest waiting request goes first. With
  the default delay of 0 a request that finds the model idle runs at once, and rows that
  arrive while a batch computes form the next batch (TEI's rule): no fixed wait at low load.
- The queue is bounded in rows: a full queue raises `Overloaded` at once (the API answers 429
  with Retry-After) instead of letting latency grow. `has_room()` lets the HTTP layer refuse
  before it parses a body, and `retry_after_s()` is service.errors' one Retry-After rule on the
  measured drain rate. Its refusals are service.errors' own (`Overloaded`, `ShuttingDown`,
  `Timeout`; `TooLarge` and `BatchFailed` are kinds of `InvalidInput` and `InternalError`).
- `session.run` happens in a worker thread (one per model), except when nothing else is
  queued and the batch's shape is known to run in under `inline_compute_ms`: then on the
  event loop itself, since waking a thread and waking the loop back cost more than the run.
- `close()` refuses new work; `drain()` flushes everything queued without waiting for the
  delay window and returns when every accepted request is answered.
- The worker is supervised: a batch that fails anywhere (the model, padding, the observer)
  fails its own requests with `BatchFailed`, is logged once with its cause and counted
  (`Observer.batch_failed`), and the worker goes on. Should the worker task end all the same,
  every queued request fails at once and `on_broken` is called (the service then marks the
  model not ready) rather than letting each request wait for its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.errors import InternalError, InvalidInput, Overloaded, ShuttingDown, Timeout, retry_after_s
from service.messages import BatchResult, Stats
from service.runtime.shapes import blank_batch

RunFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
PadShape = Callable[[int, int], tuple[int, int]]  # (rows, longest length) -> shape to run at

log = logging.getLogger(__name__)


class TooLarge(InvalidInput):
    """More rows than a batch holds (the front's validation refuses it first, normally)."""


class BatchFailed(InternalError):
    """The batch this request was in failed (the cause is chained and was logged once)."""


class Observer(Protocol):
    """Callbacks for metrics; every method is optional to implement meaningfully."""

    def accepted(self, model: str) -> None: ...
    def answered(self, model: str) -> None: ...
    def queue_depth(self, model: str, rows: int) -> None: ...
    def queue_wait(self, model: str, seconds: float) -> None: ...
    def batch(
        self, model: str, *, rows: int, padded_length: int, real_tokens: int, compute_s: float
    ) -> None: ...
    def batch_failed(self, model: str) -> None: ...


class NullObserver:
    def accepted(self, model: str) -> None:
        pass

    def answered(self, model: str) -> None:
        pass

    def queue_depth(self, model: str, rows: int) -> None:
        pass

    def queue_wait(self, model: str, seconds: float) -> None:
        pass

    def batch(self, model: str, **kw: float) -> None:
        pass

    def batch_failed(self, model: str) -> None:
        pass


@dataclass
class _Item:
    ids: list[np.ndarray]
    masks: list[np.ndarray]
    bucket: int
    future: asyncio.Future
    enqueued: float
    rows: int = 0
    request_id: str = "-"  # the HTTP request's id, for the log line of a batch that fails


def _fail_all(items: list[_Item], failed: BatchFailed, cause: BaseException) -> None:
    """Answer every still-waiting request in `items` with `failed` (its cause chained)."""
    failed.__cause__ = cause
    for it in items:
        if not it.future.done():
            it.future.set_exception(failed)


class DynamicBatcher:
    def __init__(
        self,
        name: str,
        run_fn: RunFn,
        *,
        max_batch_size: int = 32,
        max_queue_delay_ms: float = 0.0,
        max_queue_rows: int = 512,
        bucket_width: int = 16,
        pad_id: int = 0,
        timeout_s: float = 30.0,
        inline_compute_ms: float = 1.0,
        observer: Observer | None = None,
        on_broken: Callable[[BaseException], None] | None = None,
        pad_shape: PadShape | None = None,
        min_retry_after_s: int = 1,
    ) -> None:
        if max_batch_size < 1 or max_queue_rows < 1 or bucket_width < 1:
            raise ValueError("max_batch_size, max_queue_rows and bucket_width must be >= 1")
        self.name = name
        self.run_fn = run_fn
        self.pad_shape = pad_shape
        self.max_batch_size = max_batch_size
        self.max_delay = max_queue_delay_ms / 1000.0
        self.max_queue_rows = max_queue_rows
        self.bucket_width = bucket_width
        self.pad_id = pad_id
        self.min_retry_after_s = min_retry_after_s
        self.timeout_s = timeout_s
        self.inline_max_s = inline_compute_ms / 1000.0
        self._compute_s: dict[tuple[int, int], float] = {}  # (rows, bucket) -> moving average
        self.observer: Observer = observer or NullObserver()
        self.stats = Stats()
        self._buckets: dict[int, deque[_Item]] = {}
        self._queued_rows = 0
        self._mean_request_rows = 1.0  # moving average, for admission of requests not yet parsed
        self._on_room: Callable[[], None] | None = None  # called when rows leave the queue
        self.on_broken = on_broken  # called once if the worker task ends by an error
        self.broken: BaseException | None = None  # why the worker ended, if it did
        self._drain_rows_per_s = 0.0  # moving average of rows / compute second
        self._inflight = 0  # accepted, not yet answered
        self._accepting = False
        self._draining = False
        self._changed = asyncio.Event()  # queue or drain state changed: the worker looks again
        self._idle = asyncio.Event()  # no accepted request unanswered
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    # lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{self.name}")
        self._accepting = True
        self._task = asyncio.create_task(self._worker(), name=f"batcher-{self.name}")
        self._task.add_done_callback(self._worker_ended)

    def flush(self) -> None:
        """Run whatever is queued now, without waiting for the delay window (SIGTERM)."""
        self._draining = True
        self._changed.set()

    def close(self) -> None:
        """Refuse new requests (ShuttingDown); queued ones still run, without delay window."""
        self._accepting = False
        self._draining = True
        self._changed.set()

    async def drain(self, timeout: float | None = None) -> bool:
        """close(), then wait until every accepted request is answered. True if it was."""
        self.close()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self, timeout: float | None = None) -> bool:
        drained = await self.drain(timeout)
        if self._task is not None and not self._task.done():  # a broken one was reported
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for bucket in self._buckets.values():  # only left when the drain timed out
            for item in bucket:
                if not item.future.done():
                    item.future.set_exception(ShuttingDown(self.retry_after_s(), "server stopped"))
        self._buckets.clear()
        self._queued_rows = 0
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=False)
        return drained

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def accepting(self) -> bool:
        return self._accepting

    def has_room(self, rows: int = 1) -> bool:
        """Whether `rows` more rows would be accepted now (the check `submit` makes)."""
        return self._accepting and self._queued_rows + rows <= self.max_queue_rows

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait (service.errors.retry_after_s on this queue)."""
        return retry_after_s(self.min_retry_after_s, self._queued_rows, self._drain_rows_per_s)

    # what admission control (service.engine.admission) sees of the queue ------------------------
    def watch_room(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever rows leave the queue (one watcher: the model's waiting room)."""
        self._on_room = callback

    def free_rows(self) -> int:
        return self.max_queue_rows - self._queued_rows

    def usual_rows(self) -> int:
        """The usual request's rows (moving average), for admission of requests not yet parsed."""
        return max(1, round(self._mean_request_rows))

    def bucket_of(self, length: int) -> int:
        return max(1, math.ceil(length / self.bucket_width))

    # submit ----------------------------------------------------------------------------
    async def submit(
        self,
        ids_rows: Sequence[np.ndarray],
        mask_rows: Sequence[np.ndarray] | None = None,
        request_id: str = "-",
    ) -> BatchResult:
        """Queue one request (rows of int64 token ids, trailing padding trimmed) and wait."""
        item = self._enqueue(ids_rows, mask_rows)
        item.request_id = request_id
        loop = asyncio.get_running_loop()
        # a timer rather than wait_for(shield(...)): two fewer tasks and futures per request
        timer = loop.call_later(self.timeout_s, self._expire, item)
        t0 = time.perf_counter()
        try:
            return await item.future
        finally:
            timer.cancel()
            self._settle(item, time.perf_counter() - t0)

    def _enqueue(self, ids_rows: Sequence[np.ndarray], mask_rows: Sequence[np.ndarray] | None) -> _Item:
        rows = len(ids_rows)
        if not self._accepting:
            raise ShuttingDown(self.retry_after_s())
        if rows < 1 or rows > self.max_batch_size:
            raise TooLarge(f"a request holds 1..{self.max_batch_size} rows, got {rows}")
        if self._queued_rows + rows > self.max_queue_rows:
            raise Overloaded(
                f"queue of {self.name} is full ({self._queued_rows} rows waiting)", self.retry_after_s()
            )
        if mask_rows is None:
            mask_rows = [np.ones(len(r), dtype=np.int64) for r in ids_rows]
        longest = max(len(r) for r in ids_rows)
        item = _Item(
            ids=list(ids_rows),
            masks=list(mask_rows),
            bucket=self.bucket_of(longest),
            future=asyncio.get_running_loop().create_future(),
            enqueued=time.perf_counter(),
            rows=rows,
        )
        self._buckets.setdefault(item.bucket, deque()).append(item)
        self._queued_rows += rows
        self._mean_request_rows = 0.9 * self._mean_request_rows + 0.1 * rows
        self._inflight += 1
        self._idle.clear()
        self.observer.accepted(self.name)
        self.observer.queue_depth(self.name, self._queued_rows)
        self._changed.set()
        return item

    def _expire(self, item: _Item) -> None:
        """Timeout: the request is answered 504 now; the worker drops it if not yet batched."""
        if not item.future.done():
            item.future.set_exception(Timeout(f"no answer within {self.timeout_s:g} s"))

    def _settle(self, item: _Item, seconds: float) -> None:
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()
        ns = int(seconds * 1e9)
        fut = item.future
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            self.stats.success_count += 1
            self.stats.success_ns += ns
        else:
            self.stats.fail_count += 1
            self.stats.fail_ns += ns
        self.observer.answered(self.name)

    # worker ----------------------------------------------------------------------------
    def _pick(self, now: float) -> int | None:
        """The bucket to run now, or None to keep waiting."""
        full = [
            b
            for b, q in self._buckets.items()
            if sum(i.rows for i in q if not i.future.done()) >= self.max_batch_size
        ]
        oldest = min(((q[0].enqueued, b) for b, q in self._buckets.items() if q), default=None)
        if oldest is None:
            return None
        if full:
            return min(full, key=lambda b: self._buckets[b][0].enqueued)
        if self._draining or now - oldest[0] >= self.max_delay:
            return oldest[1]
        return None

    def _next_deadline(self) -> float | None:
        firsts = [q[0].enqueued for q in self._buckets.values() if q]
        return min(firsts) + self.max_delay if firsts else None

    def _take(self, bucket: int, taken: list[_Item]) -> None:
        """Move the bucket's oldest requests (up to a batch) into `taken`: filled as they leave
        the queue, so that whatever fails next, the worker knows whom to answer."""
        q = self._buckets[bucket]
        rows = 0
        while q and rows + q[0].rows <= self.max_batch_size:
            item = q.popleft()
            self._queued_rows -= item.rows
            if item.future.done():  # timed out or cancelled while waiting
                continue
            taken.append(item)
            rows += item.rows
        if not q:
            del self._buckets[bucket]
        self.observer.queue_depth(self.name, self._queued_rows)
        if self._on_room is not None:
            self._on_room()

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            bucket = self._pick(time.perf_counter())
            if bucket is None:
                self._changed.clear()
                deadline = self._next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - time.perf_counter())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)
                continue
            items: list[_Item] = []
            try:
                self._take(bucket, items)
                if items:
                    await self._run(loop, items)
            except Exception as exc:  # noqa: BLE001 - the batch's requests hear it; the worker goes on
                self._fail_batch(items, exc)

    def _fail_batch(self, items: list[_Item], exc: Exception) -> None:
        """A batch failed (model, padding, observer...): its requests get BatchFailed, the cause
        is logged once for the whole batch and counted."""
        _fail_all(items, BatchFailed(f"batch of {len(items)} requests failed: {type(exc).__name__}"), exc)
        ids = " ".join(it.request_id for it in items)
        log.error(
            "model %s: a batch of %d requests failed (requests %s)", self.name, len(items), ids, exc_info=exc
        )
        self.observer.batch_failed(self.name)

    def _worker_ended(self, task: asyncio.Task) -> None:
        """The worker task ended: fine when stopped, else every queued request fails now and the
        owner hears it (`on_broken`), instead of each request waiting for its timeout."""
        if task.cancelled() or task.exception() is None:  # stopped, as asked
            return
        exc = task.exception()
        self.broken = exc
        self._accepting = False
        queued = [item for bucket in self._buckets.values() for item in bucket]
        ids = " ".join(it.request_id for it in queued if not it.future.done()) or "none"
        log.error(
            "model %s: batcher worker stopped; the model no longer serves (queued requests failed: %s)",
            self.name,
            ids,
            exc_info=exc,
        )
        _fail_all(queued, BatchFailed(f"batcher of {self.name} stopped: {type(exc).__name__}"), exc)
        self._buckets.clear()
        self._queued_rows = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        if self.on_broken is not None:
            self.on_broken(exc)

    def _pad(self, items: list[_Item]) -> tuple[np.ndarray, np.ndarray]:
        rows = [r for it in items for r in it.ids]
        masks = [m for it in items for m in it.masks]
        width = max(len(r) for r in rows)
        shape = (len(rows), width) if self.pad_shape is None else self.pad_shape(len(rows), width)
        ids, mask = blank_batch(*shape, self.pad_id, len(rows))
        for i, (r, m) in enumerate(zip(rows, masks, strict=True)):
            ids[i, : len(r)] = r
            mask[i, : len(m)] = m
        return ids, mask

    async def _compute(
        self, loop: asyncio.AbstractEventLoop, ids: np.ndarray, mask: np.ndarray
    ) -> tuple[tuple[np.ndarray, np.ndarray], float]:
        """Run the model: on the event loop itself when nothing else waits and this shape is
        known to be quick (a thread hand-off costs more than a small batch-1 run), else in the
        worker thread so the loop keeps reading requests meanwhile."""
        known = self._compute_s.get(self._shape_key(ids.shape[0], ids.shape[1]))
        if known is not None and known < self.inline_max_s and self._queued_rows == 0:
            return self._timed(ids, mask)
        return await loop.run_in_executor(self._executor, self._timed, ids, mask)

    def _timed(self, ids: np.ndarray, mask: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], float]:
        """The model's outputs and its own run time: what decides the inline path and what the
        compute figures say. Timed around the hand-off instead, one busy spell (a thread waking
        late under load) kept a shape on the worker thread for good, each run there timing the
        hand-off again: c=1 after a burst paid a thread hop on every request."""
        t0 = time.perf_counter()
        out = self.run_fn(ids, mask)
        return out, time.perf_counter() - t0

    def _shape_key(self, rows: int, width: int) -> tuple[int, int]:
        return rows, self.bucket_of(width)

    async def _run(self, loop: asyncio.AbstractEventLoop, items: list[_Item]) -> None:
        ids, mask = self._pad(items)
        started = time.perf_counter()
        for it in items:
            self.observer.queue_wait(self.name, started - it.enqueued)
        (logits, embedding), compute_s = await self._compute(loop, ids, mask)
        rows = sum(it.rows for it in items)  # real rows: padding rows are neither counted nor answered
        self._record(items, rows, ids.shape, int(mask[:rows].sum()), started, compute_s)
        offset = 0
        for it in items:
            if not it.future.done():
                it.future.set_result(
                    BatchResult(
                        logits=logits[offset : offset + it.rows],
                        embedding=embedding[offset : offset + it.rows],
                        queue_ms=(started - it.enqueued) * 1000.0,
                        compute_ms=compute_s * 1000.0,
                        batch_size=rows,
                        padded_length=ids.shape[1],
                    )
                )
            offset += it.rows

    def _record(
        self,
        items: list[_Item],
        rows: int,
        shape: tuple[int, ...],
        real: int,
        started: float,
        compute_s: float,
    ) -> None:
        """Account a batch of `rows` real rows (`real` tokens) that ran at `shape` (padded)."""
        key = self._shape_key(shape[0], shape[1])
        width = shape[1]
        known = self._compute_s.get(key)
        self._compute_s[key] = compute_s if known is None else 0.8 * known + 0.2 * compute_s
        rate = rows / max(compute_s, 1e-9)
        prev = self._drain_rows_per_s
        self._drain_rows_per_s = rate if prev == 0.0 else 0.8 * prev + 0.2 * rate
        self.observer.batch(self.name, rows=rows, padded_length=width, real_tokens=real, compute_s=compute_s)
        st = self.stats
        st.execution_count += 1
        st.inference_count += rows
        st.compute_ns += int(compute_s * 1e9)
        st.queue_ns += sum(int((started - it.enqueued) * 1e9) for it in items)
        st.last_inference_ms = int(time.time() * 1000)
        bs = st.batch_sizes.setdefault(rows, [0, 0])
        bs[0] += 1
        bs[1] += int(compute_s * 1e9)
