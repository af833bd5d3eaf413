"""The front's client of the engine, whatever carries its messages: `EngineHandle`'s methods
(service.front.registry) as service.messages requests and replies.

Two carriers, one path (as vLLM's in-process and multiprocess engine clients): `EngineLink`
(service.front.link) sends the messages over a socket to the engine process;
`InprocClient` (service.engine.inproc) hands them to the engine in this process
(`--single-process`). Either way a reply's model-state generation is watched (a change: the models
are described again), the engine's word on queue room is kept for `has_room`, and a `Refused`
reply is raised here as the service.errors refusal it names.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TypeVar

import numpy as np
from prometheus_client.metrics_core import Metric

from service import catalog, errors
from service.catalog import AnyModel
from service.errors import ServiceError
from service.messages import (
    Admit,
    Admitted,
    BatchResult,
    Describe,
    Description,
    Infer,
    Inferred,
    MetricsQuery,
    MetricsReply,
    Refused,
    Reply,
    Request,
    Statistics,
    Stats,
    StatsQuery,
    families_in,
)
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Reply)


class EngineClient:
    """`EngineHandle` over messages; a carrier implements `_send` (and `ready`, `start`, `stop`)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.generation = 0  # bumped on every description read: the front then re-reads views()
        self._engine_generation = -1  # the engine's own count of model state changes
        self._views: dict[str, AnyModel] = {}
        self._has_room: dict[str, bool] = {}
        self._tasks: set[asyncio.Task] = set()
        self._refreshing: asyncio.Task | None = None

    @property
    def ready(self) -> bool:
        raise NotImplementedError

    async def _send(self, msg: Request, timeout: float | None = None) -> Reply:
        """The engine's reply to `msg` (refusals included, as `Refused`)."""
        raise NotImplementedError

    def begin_shutdown(self) -> None:
        """Nothing here by default: with an engine process, the supervisor drains it."""

    # the shared path --------------------------------------------------------------------
    async def _ask(self, msg: Request, kind: type[R], timeout: float | None = None) -> R:
        reply = await self._send(msg, timeout)
        if reply.generation != self._engine_generation and not isinstance(reply, Description):
            self._model_state_changed()
        if isinstance(reply, Refused):
            raise reply.refusal.error()
        if not isinstance(reply, kind):
            raise errors.InternalError(f"the engine answered {type(reply).__name__} to {type(msg).__name__}")
        return reply

    def _model_state_changed(self) -> None:
        if self.ready and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.create_task(self._refresh(), name="engine-describe")
            self._watch(self._refreshing)

    async def _refresh(self) -> None:
        """A model changed state in the engine (its batcher stopped): read the models again."""
        self._describe(await self._ask(Describe(), Description, self.settings.request_timeout_s))

    def _describe(self, d: Description) -> None:
        repo = Path(self.settings.model_repository)
        views = [catalog.from_facts(f, repo, self._views) for f in d.models]
        self._views = {v.name: v for v in views}
        self._engine_generation = d.generation
        self.generation += 1

    def _watch(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine client: task %s failed", task.get_name(), exc_info=task.exception())

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # EngineHandle -----------------------------------------------------------------------
    def views(self) -> list[AnyModel]:
        return list(self._views.values())

    def has_room(self, name: str) -> bool:
        """Whether the engine's last word on `name` was that its queue had room (a hint: the
        engine decides, and makes a request that does not fit wait in its room)."""
        return self._has_room.get(name, True)

    async def admit(self, name: str, rows: int | None = None) -> ServiceError | None:
        reply = await self._ask(Admit(name), Admitted)
        self._has_room[name] = reply.has_room
        return None if reply.refusal is None else reply.refusal.error()

    async def infer(
        self, name: str, ids_rows: list[np.ndarray], mask_rows: list[np.ndarray] | None, request_id: str = "-"
    ) -> BatchResult:
        try:
            reply = await self._ask(Infer.of(name, ids_rows, mask_rows, request_id), Inferred)
        except errors.Overloaded:
            self._has_room[name] = False  # the next request asks before its body is read
            raise
        self._has_room[name] = reply.has_room
        return reply.result

    async def statistics(self, name: str) -> Stats | None:
        return (await self._ask(StatsQuery(name), Statistics)).stats

    async def metric_families(self) -> list[Metric]:
        return families_in((await self._ask(MetricsQuery(), MetricsReply)).families)
