"""The front's link to the engine process: a ZeroMQ DEALER socket, one future per request; the
carrier of service.front.client's messages (service.messages encodes them; the engine server,
service.engine.server, has the other end).

Requests go out as `[request id, *message frames]`. The link watches the engine's process (a
pidfd on the event loop): the moment it dies, every request waiting on it is answered 503
not-ready, the front says not ready, and the link asks the engine to describe itself until the
restarted one answers. While it is down, `Service.model` refuses requests at once (503), so
none waits for its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os

import zmq

from service.errors import ModelNotReady, ServiceError
from service.front.client import EngineClient
from service.messages import Codec, Describe, Description, Reply, Request
from service.settings import ServiceSettings
from service.transport import LoopSocket

log = logging.getLogger(__name__)

DESCRIBE_TRY_S = 0.25  # how long one "describe" waits for an answer while the engine restarts


class EngineGone(ModelNotReady):
    """The engine process died while this request waited (answered 503 at once)."""


class EngineLink(EngineClient):
    """`EngineHandle` (service.front.service) for an engine in another process."""

    def __init__(self, settings: ServiceSettings, endpoint: str) -> None:
        super().__init__(settings)
        self.endpoint = endpoint
        self._connected = False
        self._codec = Codec()
        self._pending: dict[bytes, asyncio.Future] = {}
        self._ids = itertools.count()
        self._sock: LoopSocket | None = None
        self._pidfd: int | None = None
        self._reconnecting: asyncio.Task | None = None

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
        self._cancel_tasks()
        self._unwatch_engine()
        self._fail_pending(ModelNotReady("the front is stopping"))
        if self._sock is not None:
            self._sock.close()

    # the engine process ----------------------------------------------------------------
    async def _connect(self) -> None:
        """Ask the engine to describe itself until it answers; then serve and watch its process."""
        while True:
            try:
                d = await self._ask(Describe(), Description, timeout=DESCRIBE_TRY_S)
                break
            except (TimeoutError, ModelNotReady):
                continue
        self._describe(d)
        self._watch_engine(d.pid)
        self._connected = True
        log.info("engine %d connected (%d models)", d.pid, len(d.models))

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

    # the carrier ----------------------------------------------------------------------
    async def _send(self, msg: Request, timeout: float | None = None) -> Reply:
        assert self._sock is not None
        if not self._connected and not isinstance(msg, Describe):
            raise EngineGone("the engine is restarting")
        rid = next(self._ids).to_bytes(8, "little")
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._sock.send([rid, *self._codec.encode(msg)])
            # the engine answers every message (its own timeout ends a request's wait); this
            # backstop only bounds a wait on an engine that lost one
            return await asyncio.wait_for(fut, timeout or self.settings.request_timeout_s + 5.0)
        finally:
            self._pending.pop(rid, None)

    def _received(self, message: list[bytes]) -> None:
        rid, *frames = message
        fut = self._pending.pop(rid, None)
        if fut is None or fut.done():
            return  # answered already (the engine died meanwhile) or a stale describe
        try:
            fut.set_result(self._codec.reply(frames))
        except Exception as exc:  # an engine of another version, a bug: this request fails, logged
            log.exception("engine link: a reply could not be read")
            fut.set_exception(exc)
