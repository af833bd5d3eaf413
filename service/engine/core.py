"""The engine: the models' sessions, one batcher queue per model and its waiting room.

It never sees HTTP: it is handed token-id rows and answers logits (`infer`), decides whether a
request may go on while its model's queue is full (`admit`, the FIFO waiting room), and counts
queues, batches and models (`EngineMetrics`). In `python -m service` it runs in its own process
behind service.engine.server; in one process (tests, `--single-process`) behind
service.engine.inproc; either way service.engine.dispatch answers the front's messages, and the
refusals it raises are service.errors, never statuses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial

import numpy as np

from service import catalog
from service.catalog import FailedModel
from service.engine import repository
from service.engine.admission import WaitingRoom
from service.engine.batcher import BatchResult, DynamicBatcher, Stats
from service.engine.model import AnyEngineModel, EngineModel
from service.engine.repository import LoadedModel
from service.errors import ModelNotReady, Overloaded, ServiceError, ShuttingDown
from service.metrics import EngineMetrics
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

# settings every model's DynamicBatcher takes under their own names
BATCHER_SETTINGS = ("max_batch_size", "max_queue_delay_ms", "max_queue_rows", "inline_compute_ms")


class Engine:
    def __init__(self, settings: ServiceSettings, *, gpu_metrics: bool = True) -> None:
        self.settings = settings
        self.metrics = EngineMetrics(gpu=gpu_metrics)
        self.models: dict[str, AnyEngineModel] = {}
        self.ready = False  # every model loaded or failed, the serving ones' batchers started
        self.generation = 0  # bumped when a model's state changes (the front then re-reads views())
        self._loop: asyncio.AbstractEventLoop | None = None

    # lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        s = self.settings
        found = repository.discover(s.model_repository, s.models)
        for f in found:
            loaded = (
                f
                if isinstance(f, FailedModel)
                else await asyncio.to_thread(repository.load, f, s, len(found))
            )
            entry = loaded if isinstance(loaded, FailedModel) else await self._serve(loaded)
            self.models[entry.name] = entry
            self.metrics.model_ready.labels(entry.name).set(1 if isinstance(entry, EngineModel) else 0)
        self.ready = True
        print(self.summary(), flush=True)

    async def _serve(self, loaded: LoadedModel) -> EngineModel:
        """`loaded` with its batcher started and its waiting room: a model that serves."""
        s, m, name = self.settings, loaded.manifest, loaded.name
        self.metrics.model_info.labels(
            name, m.arch, str(m.layers), str(m.heads), loaded.runtime.provider, loaded.variant
        ).set(1)
        if loaded.runtime.graphs is not None:
            self.metrics.watch_graphs(name, loaded.runtime.graphs.memory)
        self.metrics.queue_depth_g.labels(name).set(0)
        self.metrics.inflight.labels(name).set(0)
        b = DynamicBatcher(
            name,
            loaded.runtime.run,
            bucket_width=s.length_bucket,
            pad_shape=loaded.runtime.padded_shape,
            pad_id=m.pad_id,
            timeout_s=s.request_timeout_s,
            observer=self.metrics,
            on_broken=partial(self._broken, name),
            min_retry_after_s=s.retry_after_s,
            **{k: getattr(s, k) for k in BATCHER_SETTINGS},
        )
        await b.start()
        return EngineModel(loaded, b, WaitingRoom(b, s.admission_wait_ms / 1000.0))

    def _broken(self, name: str, exc: BaseException) -> None:
        """The model's batcher stopped (logged there): the model no longer serves, and says so."""
        was = self.models[name]
        error = f"batcher stopped: {type(exc).__name__}: {exc}"
        self.models[name] = FailedModel(name, error, was.load_seconds)
        self.metrics.model_ready.labels(name).set(0)
        self.generation += 1

    def serving(self) -> list[EngineModel]:
        return [m for m in self.models.values() if isinstance(m, EngineModel)]

    def views(self) -> list[catalog.AnyModel]:
        """What the front knows of each model."""
        return [m.view() if isinstance(m, EngineModel) else m for m in self.models.values()]

    def summary(self) -> str:
        """The start line: every model's state, variant, parity and graphs, and the settings."""
        models = [
            {
                "name": e.name,
                "state": e.state,
                "provider": e.loaded.runtime.provider if isinstance(e, EngineModel) else None,
                "variant": e.loaded.variant if isinstance(e, EngineModel) else None,
                "parity": e.loaded.served.status if isinstance(e, EngineModel) else None,
                "error": e.error if isinstance(e, FailedModel) else None,
                "load_s": round(e.load_seconds, 3),
                "cuda_graphs": e.loaded.runtime.graph_figures() if isinstance(e, EngineModel) else None,
            }
            for e in self.models.values()
        ]
        return json.dumps(
            {"event": "started", "settings": self.settings.model_dump(mode="json"), "models": models},
            sort_keys=True,
        )

    def flush(self) -> None:
        """The service is stopping (the fronts drain): queued work runs at once, without the
        delay window; new work is still accepted, as the fronts' accepted requests arrive."""
        for m in self.serving():
            m.batcher.flush()

    def begin_shutdown(self) -> None:
        """Queued work runs at once, waiters are answered. Safe from a signal handler."""
        if self._loop is not None and not self._loop.is_closed():
            for m in self.serving():
                self._loop.call_soon_threadsafe(m.batcher.flush)
                self._loop.call_soon_threadsafe(m.room.refuse_all)

    async def stop(self) -> None:
        """Every accepted request answered (up to the grace), then the batchers stop."""
        grace = self.settings.shutdown_grace_s
        results = await asyncio.gather(*(m.batcher.stop(grace) for m in self.serving()))
        if not all(results):
            log.error("shutdown: some requests were still queued after %.1f s", grace)

    # requests -------------------------------------------------------------------------
    def _model(self, name: str) -> EngineModel:
        entry = self.models.get(name)
        if not isinstance(entry, EngineModel):
            reason = entry.error if isinstance(entry, FailedModel) else "not loaded by the engine"
            raise ModelNotReady.of(name, reason)
        return entry

    def has_room(self, name: str) -> bool:
        """Whether a request of the usual size for `name` would be queued now, nobody waiting."""
        entry = self.models.get(name)
        return not isinstance(entry, EngineModel) or (entry.room.waiting == 0 and entry.batcher.has_room(1))

    async def admit(self, name: str, rows: int | None = None) -> ServiceError | None:
        """The refusal of a request for `name` with `rows` rows (None: not parsed yet) while its
        queue is full, after a bounded first-come-first-served wait for room; or None.

        Under overload, parsing and validating a body only to refuse it is what starves the model
        (useful work fell to 13% of capacity): the front asks before it reads the body. Unknown or
        unready models are let through, for the route to name the field.
        """
        entry = self.models.get(name)
        if not isinstance(entry, EngineModel) or await entry.room.enter(rows):
            return None
        b = entry.batcher
        if not b.accepting:
            return ShuttingDown(b.retry_after_s())
        return Overloaded(f"queue of {name} is full ({b.queued_rows} rows waiting)", b.retry_after_s())

    async def infer(
        self,
        name: str,
        ids_rows: list[np.ndarray],
        mask_rows: list[np.ndarray] | None = None,
        request_id: str = "-",
    ) -> BatchResult:
        """The request's rows through its model's batcher; rows that do not fit in the queue wait
        for room as a request does before its body is read. The batcher's refusals are
        service.errors' own (Overloaded, ShuttingDown, Timeout, BatchFailed: logged there)."""
        entry = self._model(name)
        if self.settings.null_engine:
            return _null_result(entry, len(ids_rows))
        b = entry.batcher
        if not b.has_room(len(ids_rows)):
            refusal = await self.admit(name, len(ids_rows))
            if refusal is not None:
                raise refusal
        return await b.submit(ids_rows, mask_rows, request_id)

    def statistics(self, name: str) -> Stats | None:
        """The v2 statistics of a serving model (None for one that does not serve)."""
        entry = self.models.get(name)
        return entry.batcher.stats if isinstance(entry, EngineModel) else None


def _null_result(entry: EngineModel, rows: int) -> BatchResult:
    """The null engine's answer (benchmarks): zeros of the model's output shapes, at once."""
    m = entry.loaded.manifest
    logits = np.zeros((rows, len(m.labels)), dtype=np.float32)
    return BatchResult(logits, np.zeros((rows, m.d_model), dtype=np.float32), 0.0, 0.0, rows, 0)
