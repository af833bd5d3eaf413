"""The engine process: the Engine (service.engine.core) behind a ZeroMQ ROUTER socket.

Fronts (service.front.link) send multipart messages `[request id, op, JSON header, *buffers]`
and get `[request id, b"ok" | b"err", JSON header, *buffers]` back. Token ids and logits cross
as raw little-endian buffers (int64 in, float32 out) with their lengths in the small header;
never as JSON. Every front's requests meet in the engine's one queue per model, so batches are
formed across fronts and admission (queue rows, the waiting room) is decided in one place.

SIGUSR1 (the supervisor, when the service is told to stop): queued work runs at once, without the
delay window, while the fronts drain. SIGTERM (once the fronts have drained): every accepted
request is answered, then the process exits 0. SIGINT is left to the supervisor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import orjson
import zmq

from service import catalog
from service.engine.batcher import BatchResult
from service.engine.core import Engine
from service.engine.wire import LoopSocket
from service.errors import InternalError, ServiceError
from service.metrics import families, to_wire
from service.settings import ServiceSettings

log = logging.getLogger("service.engine")

OK, ERR = b"ok", b"err"
Reply = tuple[dict[str, Any], list[bytes]]


def split_rows(flat: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """Rows of a flat buffer, by their lengths."""
    return np.split(flat, np.cumsum(lengths)[:-1]) if lengths else []


def join_rows(rows: list[np.ndarray]) -> tuple[list[int], bytes]:
    """Rows as their lengths and one int64 buffer (what crosses the wire)."""
    return [len(r) for r in rows], np.concatenate(rows).astype(np.int64, copy=False).tobytes()


def result_reply(r: BatchResult) -> Reply:
    logits = np.ascontiguousarray(r.logits, dtype=np.float32)
    emb = np.ascontiguousarray(r.embedding, dtype=np.float32)
    head = {
        "q": r.queue_ms,
        "c": r.compute_ms,
        "b": r.batch_size,
        "p": r.padded_length,
        "shape": [logits.shape[1], emb.shape[1]],
    }
    return head, [logits.tobytes(), emb.tobytes()]


def error_head(exc: ServiceError) -> dict[str, Any]:
    return {"kind": type(exc).__name__, "message": exc.message, "field": exc.field, "retry": exc.retry_after}


class EngineServer:
    """Answers the fronts' ops from the engine; one task per message, every one watched."""

    def __init__(self, engine: Engine, endpoint: str) -> None:
        self.engine = engine
        self.endpoint = endpoint
        self.ops: dict[bytes, Callable[[dict, list[bytes]], Awaitable[Reply]]] = {
            b"describe": self._describe,
            b"infer": self._infer,
            b"admit": self._admit,
            b"stats": self._stats,
            b"metrics": self._metrics,
        }
        self._tasks: set[asyncio.Task] = set()
        self._sock = LoopSocket(zmq.ROUTER, self._received)

    def bind(self) -> None:
        self._sock.sock.bind(self.endpoint)

    async def serve(self, stop: asyncio.Event) -> None:
        """Answer until `stop`, then drain: queued work runs, every accepted request answered."""
        self._sock.start()
        await stop.wait()
        self.engine.begin_shutdown()
        await self.engine.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.engine.settings.shutdown_grace_s)
        self._sock.close()

    def _received(self, frames: list[bytes]) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(frames))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine: answering a front failed", exc_info=task.exception())

    async def _answer(self, frames: list[bytes]) -> None:
        """Every message is answered: the op's reply, its refusal, or (a bug) an InternalError."""
        ident, rid, op, header, *buffers = frames
        try:
            head, out = await self.ops[op](orjson.loads(header), buffers)
            reply = [OK, self._head(head), *out]
        except ServiceError as exc:
            reply = [ERR, self._head(error_head(exc))]
        except Exception:
            log.exception("engine: %s failed", op.decode(errors="replace"))
            reply = [ERR, self._head(error_head(InternalError("the engine failed at this request")))]
        self._sock.send([ident, rid, *reply])

    def _head(self, head: dict[str, Any]) -> bytes:
        head["v"] = self.engine.version
        return orjson.dumps(head, option=orjson.OPT_NON_STR_KEYS)

    async def _describe(self, head: dict, buffers: list[bytes]) -> Reply:
        models = [catalog.facts(m) for m in self.engine.views()]
        return {"pid": os.getpid(), "models": models}, []

    async def _infer(self, head: dict, buffers: list[bytes]) -> Reply:
        lengths = head["n"]
        ids = split_rows(np.frombuffer(buffers[0], dtype=np.int64), lengths)
        masks = split_rows(np.frombuffer(buffers[1], dtype=np.int64), lengths) if len(buffers) > 1 else None
        result = await self.engine.infer(head["m"], ids, masks, head.get("rid", "-"))
        reply, out = result_reply(result)
        reply["room"] = self.engine.has_room(head["m"])
        return reply, out

    async def _admit(self, head: dict, buffers: list[bytes]) -> Reply:
        refusal = await self.engine.admit(head["m"])
        reply: dict[str, Any] = {"room": self.engine.has_room(head["m"])}
        if refusal is not None:
            reply["refusal"] = error_head(refusal)
        return reply, []

    async def _stats(self, head: dict, buffers: list[bytes]) -> Reply:
        st = self.engine.stats(head["m"])
        return {"stats": None if st is None else dataclasses.asdict(st)}, []

    async def _metrics(self, head: dict, buffers: list[bytes]) -> Reply:
        return {"families": to_wire(families(self.engine.metrics.registry))}, []


async def _run(settings: ServiceSettings, endpoint: str, ready: Connection) -> None:
    engine = Engine(settings)
    await engine.start()
    server = EngineServer(engine, endpoint)
    server.bind()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, engine.flush)
    ready.send(os.getpid())
    ready.close()
    await server.serve(stop)


def main(settings_json: str, endpoint: str, ready: Connection) -> None:
    """The engine process's entry (spawned by service.supervisor)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
    settings = ServiceSettings.model_validate_json(settings_json)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s[engine]: %(message)s"
    )
    import uvloop  # the engine process's own event loop: the supervisor that imports us never runs one

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_run(settings, endpoint, ready))
