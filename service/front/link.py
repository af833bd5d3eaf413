"""The front's link to the engine process: one Unix-socket connection (service.transport), one
future per request; the carrier of service.front.client's messages (service.messages encodes
them; the engine server, service.engine.server, has the other end).

Requests go out as `[request id, *message frames]`. The link watches the engine's process (a
pidfd on the event loop) and its connection: the moment either ends, every request waiting on
it is answered 503 not-ready, the front says not ready, and the link connects again and asks the
engine to describe itself until the restarted one answers. While it is down, `Registry.model` refuses requests at once (503), so
none waits for its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os

from service import transport
from service.errors import ModelNotReady, ServiceError
from service.front.client import EngineClient
from service.messages import Codec, Describe, Description, Reply, Request
from service.settings import ServiceSettings
from service.transport import FrameStream

log = logging.getLogger(__name__)

DESCRIBE_TRY_S = 0.25  # how long one "describe" waits for an answer while the engine restarts
CONNECT_RETRY_S = 0.05  # between tries to connect while the engine has no socket yet


class EngineGone(ModelNotReady):
    """The engine process died while this request waited (answered 503 at once)."""


class EngineLink(EngineClient):
    """`EngineHandle` (service.front.registry) for an engine in another process."""

    def __init__(self, settings: ServiceSettings, endpoint: str) -> None:
        super().__init__(settings)
        self.endpoint = endpoint
        self._connected = False
        self._codec = Codec()
        self._pending: dict[bytes, asyncio.Future] = {}
        self._ids = itertools.count()
        self._stream: FrameStream | None = None
        self._engine_pid: int | None = None
        self._pidfd: int | None = None
        self._reconnecting: asyncio.Task | None = None

    # lifecycle ------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._connected

    async def start(self) -> None:
        await self._connect()

    async def stop(self) -> None:
        self._connected = False
        self._cancel_tasks()
        self._unwatch_engine()
        self._fail_pending(ModelNotReady("the front is stopping"))
        if self._stream is not None:
            self._stream.on_lost = None
            self._stream.close()

    # the engine process ----------------------------------------------------------------
    async def _connect(self) -> None:
        """Connect and ask the engine to describe itself until it answers; then serve and watch
        its process."""
        while True:
            try:
                if self._stream is None or self._stream.closed:
                    self._stream = await transport.connect(self.endpoint, self._received, self._disconnected)
                d = await self._ask(Describe(), Description, timeout=DESCRIBE_TRY_S)
                break
            except OSError:  # no engine socket yet (it is starting), or it went away again
                await asyncio.sleep(CONNECT_RETRY_S)
            except (TimeoutError, ModelNotReady):
                continue
        self._describe(d)
        self._engine_pid = d.pid
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

    def _disconnected(self, stream: FrameStream) -> None:
        if stream is self._stream and self._connected:
            self._lost(self._engine_pid or 0)

    def _lost(self, pid: int) -> None:
        """The engine process ended (or its connection did): waiting requests answered 503 now,
        then reconnect."""
        self._unwatch_engine()
        if self._connected:
            log.error("engine %d is gone: requests answered 503 until it is back", pid)
        self._connected = False
        if self._stream is not None:  # the dead engine's connection: a new one is made
            self._stream.on_lost = None
            self._stream.close()
            self._stream = None
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
        stream = self._stream
        if stream is None or stream.closed or (not self._connected and not isinstance(msg, Describe)):
            raise EngineGone("the engine is restarting")
        rid = next(self._ids).to_bytes(8, "little")
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            stream.send([rid, *self._codec.encode(msg)])
            # the engine answers every message (its own timeout ends a request's wait); this
            # backstop only bounds a wait on an engine that lost one
            return await asyncio.wait_for(fut, timeout or self.settings.request_timeout_s + 5.0)
        finally:
            self._pending.pop(rid, None)

    def _received(self, stream: FrameStream, message: list[bytes]) -> None:
        rid, *frames = message
        fut = self._pending.pop(rid, None)
        if fut is None or fut.done():
            return  # answered already (the engine died meanwhile) or a stale describe
        try:
            fut.set_result(self._codec.reply(frames))
        except Exception as exc:  # an engine of another version, a bug: this request fails, logged
            log.exception("engine link: a reply could not be read")
            fut.set_exception(exc)
