"""The front's link to the engine process: a ZeroMQ DEALER socket, one future per request.

Requests go out as `[request id, op, JSON header, *buffers]` (service.engine.server has the
other side): token ids as one int64 buffer with the rows' lengths in the header, logits and
embeddings back as float32 buffers. The link watches the engine's process (a pidfd on the
event loop): the moment it dies, every request waiting on it is answered 503 not-ready, the
front says not ready, and the link asks the engine to describe itself until the restarted one
answers. While it is down, `Service.model` refuses requests at once (503), so none waits for
its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import zmq
from prometheus_client.metrics_core import Metric

from service import catalog, errors
from service.catalog import AnyModel
from service.engine.batcher import BatchResult, Stats
from service.engine.server import ERR, join_rows
from service.engine.wire import LoopSocket
from service.errors import ModelNotReady, ServiceError
from service.metrics import from_wire
from service.settings import ServiceSettings

log = logging.getLogger("service.link")

DESCRIBE_TRY_S = 0.25  # how long one "describe" waits for an answer while the engine restarts
ERRORS = {
    c.__name__: c
    for c in (
        errors.InvalidInput,
        errors.ModelNotReady,
        errors.Overloaded,
        errors.ShuttingDown,
        errors.Timeout,
        errors.InternalError,
    )
}


def rebuild(head: dict[str, Any]) -> ServiceError:
    """The engine's refusal, as the same class with the same message, field and Retry-After."""
    cls = ERRORS.get(head["kind"], errors.InternalError)
    exc = cls.__new__(cls)
    ServiceError.__init__(exc, head["message"], head["field"], head["retry"])
    return exc


class EngineGone(ModelNotReady):
    """The engine process died while this request waited (answered 503 at once)."""


class EngineLink:
    """`EngineHandle` (service.front.service) for an engine in another process."""

    def __init__(self, settings: ServiceSettings, endpoint: str) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.version = 0  # bumped on every description read: the front then re-reads views()
        self._engine_version = -1  # the engine's own count of model state changes
        self._connected = False
        self._facts: list[dict[str, Any]] = []
        self._views: dict[str, AnyModel] = {}
        self._room: dict[str, bool] = {}
        self._pending: dict[bytes, asyncio.Future] = {}
        self._ids = itertools.count()
        self._sock: LoopSocket | None = None
        self._pidfd: int | None = None
        self._tasks: set[asyncio.Task] = set()
        self._reconnecting: asyncio.Task | None = None
        self._refreshing: asyncio.Task | None = None

    # lifecycle ------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._connected

    async def start(self) -> None:
        self._sock = LoopSocket(zmq.DEALER, self._received)
        self._sock.sock.connect(self.endpoint)
        self._sock.start()
        await self._connect()

    async def stop(self) -> None:
        self._connected = False
        for task in list(self._tasks):
            task.cancel()
        self._unwatch_engine()
        self._fail_pending(ModelNotReady("the front is stopping"))
        if self._sock is not None:
            self._sock.close()

    def begin_shutdown(self) -> None:
        """Nothing here: the supervisor drains the engine once every front has drained."""

    def _watch(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine link: task %s failed", task.get_name(), exc_info=task.exception())

    # the engine process ----------------------------------------------------------------
    async def _connect(self) -> None:
        """Ask the engine to describe itself until it answers; then serve and watch its process."""
        while True:
            try:
                head, _ = await self._call(b"describe", {}, timeout=DESCRIBE_TRY_S)
                break
            except (TimeoutError, ModelNotReady):
                continue
        self._describe(head)
        self._watch_engine(head["pid"])
        self._connected = True
        log.info("engine %d connected (%d models)", head["pid"], len(head["models"]))

    def _describe(self, head: dict[str, Any]) -> None:
        repo = self.settings.model_repository
        views = [catalog.from_facts(d, Path(repo), self._views) for d in head["models"]]
        self._views = {v.name: v for v in views}
        self._engine_version = head["v"]
        self.version += 1

    def _watch_engine(self, pid: int) -> None:
        self._unwatch_engine()
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # died between its answer and now
            self._lost(pid)
            return
        asyncio.get_running_loop().add_reader(self._pidfd, self._lost, pid)

    def _unwatch_engine(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _lost(self, pid: int) -> None:
        """The engine process ended: waiting requests answered 503 now, then reconnect."""
        self._unwatch_engine()
        self._connected = False
        log.error("engine %d is gone: requests answered 503 until it is back", pid)
        self._fail_pending(EngineGone("the engine stopped; it is being restarted"))
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.create_task(self._connect(), name="engine-reconnect")
            self._watch(self._reconnecting)

    def _fail_pending(self, exc: ServiceError) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)

    # requests -------------------------------------------------------------------------
    async def _call(
        self, op: bytes, head: dict[str, Any], frames: list[bytes] = (), timeout: float | None = None
    ) -> tuple[dict[str, Any], list[bytes]]:
        assert self._sock is not None
        if not self._connected and op != b"describe":
            raise EngineGone("the engine is restarting")
        rid = next(self._ids).to_bytes(8, "little")
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._sock.send([rid, op, orjson.dumps(head), *frames])
            # the engine answers every message (its own timeout ends a request's wait); this
            # backstop only bounds a wait on an engine that lost one
            return await asyncio.wait_for(fut, timeout or self.settings.request_timeout_s + 5.0)
        finally:
            self._pending.pop(rid, None)

    def _received(self, message: list[bytes]) -> None:
        rid, status, head, *frames = message
        fut = self._pending.pop(rid, None)
        if fut is None or fut.done():
            return  # answered already (the engine died meanwhile) or a stale describe
        reply = orjson.loads(head)
        changed = reply.get("v", self._engine_version) != self._engine_version
        if changed and self._connected and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.create_task(self._refresh(), name="engine-describe")
            self._watch(self._refreshing)
        if status == ERR:
            fut.set_exception(rebuild(reply))
        else:
            fut.set_result((reply, frames))

    async def _refresh(self) -> None:
        """A model changed state in the engine (its batcher stopped): read the models again."""
        head, _ = await self._call(b"describe", {}, timeout=self.settings.request_timeout_s)
        self._describe(head)

    def views(self) -> list[AnyModel]:
        return list(self._views.values())

    def has_room(self, name: str) -> bool:
        """Whether the engine's last word on `name` was that its queue had room (a hint: the
        engine decides, and makes a request that does not fit wait in its room)."""
        return self._room.get(name, True)

    async def admit(self, name: str, rows: int | None = None) -> ServiceError | None:
        head, _ = await self._call(b"admit", {"m": name})
        self._room[name] = head["room"]
        return rebuild(head["refusal"]) if "refusal" in head else None

    async def infer(
        self, name: str, ids_rows: list[np.ndarray], mask_rows: list[np.ndarray] | None, request_id: str = "-"
    ) -> BatchResult:
        lengths, ids = join_rows(ids_rows)
        frames = [ids] if mask_rows is None else [ids, join_rows(mask_rows)[1]]
        head = {"m": name, "n": lengths, "rid": request_id}
        try:
            reply, (logits, emb) = await self._call(b"infer", head, frames)
        except errors.Overloaded:
            self._room[name] = False  # the next request asks before its body is read
            raise
        self._room[name] = reply["room"]
        labels, dim = reply["shape"]
        return BatchResult(
            np.frombuffer(logits, dtype=np.float32).reshape(-1, labels),
            np.frombuffer(emb, dtype=np.float32).reshape(-1, dim),
            reply["q"],
            reply["c"],
            reply["b"],
            reply["p"],
        )

    async def statistics(self, name: str) -> Stats | None:
        head, _ = await self._call(b"stats", {"m": name})
        st = head["stats"]
        if st is None:
            return None
        st["batch_sizes"] = {int(k): v for k, v in st["batch_sizes"].items()}
        return Stats(**st)

    async def metric_families(self) -> list[Metric]:
        head, _ = await self._call(b"metrics", {})
        return from_wire(head["families"])
