"""The engine process: the Engine (service.engine.core) behind a Unix socket (service.transport).

Fronts (service.front.link) send `[request id, *message frames]` and get `[request id, *reply
frames]` back: the messages and their encoding are service.messages' (token ids and logits as
raw side frames, never in the header); what each one does is service.engine.dispatch's. This
module is the transport: receive, decode, answer (one task per message, every one watched),
encode, send. Every front's requests meet in the engine's one queue per model, so batches are
formed across fronts and admission (queue rows, the waiting room) is decided in one place.

SIGUSR1 (the supervisor, when the service is told to stop): queued work runs at once, without the
delay window, while the fronts drain. SIGTERM (once the fronts have drained): every accepted
request is answered, then the process exits 0. SIGINT is left to the supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from multiprocessing.connection import Connection

from service.engine.core import Engine
from service.engine.dispatch import Dispatcher
from service.errors import InternalError
from service.messages import Codec, Refused, Reply, Request, refusal_of
from service.settings import ServiceSettings
from service.transport import FrameStream, listen

log = logging.getLogger(__name__)


class EngineServer:
    """Answers the fronts' messages from the engine; one task per message, every one watched."""

    def __init__(self, engine: Engine, endpoint: str) -> None:
        self.engine = engine
        self.endpoint = endpoint
        self.dispatcher = Dispatcher(engine)
        self.codec = Codec()
        self._tasks: set[asyncio.Task] = set()
        self._listener: socket.socket | None = None

    def bind(self) -> None:
        self._listener = listen(self.endpoint)

    async def serve(self, stop: asyncio.Event) -> None:
        """Answer until `stop`, then drain: queued work runs, every accepted request answered."""
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(lambda: FrameStream(self._received), sock=self._listener)
        await stop.wait()
        self.engine.begin_shutdown()
        await self.engine.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.engine.settings.shutdown_grace_s)
        server.close()

    def _received(self, stream: FrameStream, frames: list[bytes]) -> None:
        rid, *message = frames
        try:
            msg = self.codec.request(message)
        except Exception:  # a front of another version, a bug: answered, never left waiting
            log.exception("engine: a message could not be read")
            self._reply(stream, rid, Refused(refusal=refusal_of(InternalError("unreadable message"))))
            return
        task = asyncio.get_running_loop().create_task(self._answer(stream, rid, msg))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine: answering a front failed", exc_info=task.exception())

    async def _answer(self, stream: FrameStream, rid: bytes, msg: Request) -> None:
        self._reply(stream, rid, await self.dispatcher.answer(msg))

    def _reply(self, stream: FrameStream, rid: bytes, reply: Reply) -> None:
        """The reply on the connection its request came on (a front gone meanwhile: dropped)."""
        if not stream.closed:
            stream.send([rid, *self.codec.encode(reply)])


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
