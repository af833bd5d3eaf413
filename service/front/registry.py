"""The front's view of the service: the models by name (the registry), readiness, draining, and
the handle on the engine that runs them.

The engine is either in this process (`service.engine.inproc.InprocClient`: tests,
`--single-process`) or in its own (`service.front.link.EngineLink`, over ZeroMQ); both are
service.front.client's one client of the engine's messages and raise service.errors, so the
routes never know which.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from prometheus_client.metrics_core import Metric

from service import catalog
from service.catalog import AnyModel, FailedModel, Model
from service.errors import EngineDown, ModelNotReady, ServiceError, UnknownModel
from service.messages import BatchResult, Stats
from service.metrics import UNKNOWN_MODEL, FrontMetrics
from service.settings import ServiceSettings


class EngineHandle(Protocol):
    """What the front needs of the engine, wherever it runs."""

    @property
    def started(self) -> bool:
        """The engine has described its models once (ready or not)."""
        return self._generation >= 0

    @property
    def ready(self) -> bool: ...
    @property
    def generation(self) -> int: ...  # changes when a model's state does
    async def start(self) -> None: ...
    def views(self) -> list[AnyModel]: ...
    def has_room(self, name: str) -> bool: ...
    async def admit(self, name: str, rows: int | None = None) -> ServiceError | None: ...
    async def infer(
        self, name: str, ids_rows: list[np.ndarray], mask_rows: list[np.ndarray] | None, request_id: str
    ) -> BatchResult: ...
    async def statistics(self, name: str) -> Stats | None: ...
    async def metric_families(self) -> list[Metric]: ...
    def begin_shutdown(self) -> None: ...
    async def stop(self) -> None: ...


class Registry:
    """The models by name as the engine described them, whether the service is ready or
    draining, and the engine behind them: what every route asks."""

    def __init__(
        self, settings: ServiceSettings, engine: EngineHandle, metrics: FrontMetrics | None = None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics or FrontMetrics()
        self.models: dict[str, AnyModel] = {}
        self.draining = False
        self._generation = -1

    # lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self.engine.start()
        self.refresh()

    def refresh(self) -> None:
        """The registry from the engine's description of its models."""
        self._generation = self.engine.generation
        self.models = {m.name: m for m in catalog.share_tokenizers(self.engine.views())}

    def begin_shutdown(self) -> None:
        """SIGTERM: new requests get 503. Safe from a signal handler."""
        self.draining = True
        self.engine.begin_shutdown()

    async def stop(self) -> None:
        self.draining = True
        await self.engine.stop()

    @property
    def started(self) -> bool:
        """The engine has described its models once (ready or not)."""
        return self._generation >= 0

    @property
    def ready(self) -> bool:
        if self.draining or not self.started or not self.engine.ready:
            return False
        states = [isinstance(e, Model) for e in self.models.values()]
        if not states:
            return False
        return all(states) if self.settings.require_all_models else any(states)

    # registry -------------------------------------------------------------------------
    def serving(self) -> list[Model]:
        return [m for m in self.models.values() if isinstance(m, Model)]

    def model_label(self, name: str | None) -> str:
        return name if name in self.models else UNKNOWN_MODEL

    def known(self, name: str, field: str | None = "name") -> AnyModel:
        """The model of that name, serving or not (listing, statistics)."""
        if self.engine.generation != self._generation and self.started:
            self.refresh()
        entry = self.models.get(name)
        if entry is None:
            raise UnknownModel(name, field)
        return entry

    def model(self, name: str, field: str | None = "name") -> Model:
        """The model of that name, loaded and serving with its engine up: the one readiness test
        of every route."""
        entry = self.known(name, field)
        if isinstance(entry, FailedModel):
            raise ModelNotReady.of(name, entry.error, field)
        if not self.engine.ready:
            raise EngineDown.of(name, "the engine is restarting", field)
        return entry

    # the engine's work ----------------------------------------------------------------
    async def admission(self, name: str) -> ServiceError | None:
        """The refusal of a work request for `name` decided before its body is read (the engine
        decides: its queue, its waiting room), or None."""
        if name not in self.models or self.engine.has_room(name) or not self.engine.ready:
            return None
        return await self.engine.admit(name)

    async def infer(
        self,
        entry: Model,
        ids_rows: list[np.ndarray],
        mask_rows: list[np.ndarray] | None = None,
        request_id: str = "-",
    ) -> BatchResult:
        return await self.engine.infer(entry.name, ids_rows, mask_rows, request_id)
