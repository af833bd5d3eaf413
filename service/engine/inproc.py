"""The engine in the front's own process (`--single-process`, tests, embedding the app): the same
client as the engine process's link (service.front.client), its messages handed to the engine's
dispatcher without encoding, so both shapes take one path.
"""

from __future__ import annotations

from service.engine.core import Engine
from service.engine.dispatch import Dispatcher
from service.front.client import EngineClient
from service.messages import Describe, Description, Reply, Request
from service.settings import ServiceSettings


class InprocClient(EngineClient):
    """`EngineHandle` for an engine in this process; it starts and stops the engine itself."""

    def __init__(self, settings: ServiceSettings, engine: Engine | None = None, *, gpu_metrics: bool = True):
        super().__init__(settings)
        self.engine = engine or Engine(settings, gpu_metrics=gpu_metrics)
        self._dispatcher = Dispatcher(self.engine)

    @property
    def ready(self) -> bool:
        return self.engine.ready

    async def start(self) -> None:
        await self.engine.start()
        self._describe(await self._ask(Describe(), Description))

    def begin_shutdown(self) -> None:
        self.engine.begin_shutdown()

    async def stop(self) -> None:
        self._cancel_tasks()
        await self.engine.stop()

    def has_room(self, name: str) -> bool:
        """The engine's own answer: in one process asking costs nothing."""
        return self.engine.has_room(name)

    async def _send(self, msg: Request, timeout: float | None = None) -> Reply:
        return await self._dispatcher.answer(msg)
