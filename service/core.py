"""The serving core shared by both APIs: models, batchers, validation, predictions.

Refusals are raised as service.errors (what went wrong), never as HTTP statuses: each API says
them in its protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from functools import partial

import numpy as np

from contract import tensors
from service.engine import batcher, repository
from service.engine.admission import WaitingRoom
from service.engine.batcher import BatchResult, DynamicBatcher
from service.engine.model import AnyModel, Model
from service.engine.repository import FailedModel, LoadedModel
from service.errors import (
    InternalError,
    InvalidInput,
    ModelNotReady,
    Overloaded,
    ServiceError,
    ShuttingDown,
    Timeout,
    UnknownModel,
)
from service.metrics import UNKNOWN_MODEL, Metrics
from service.settings import ServiceSettings

log = logging.getLogger("service")

Encoded = tuple[list[np.ndarray], list[int], list[bool]]  # ids per row, tokens kept, whether cut
# settings every model's DynamicBatcher takes under their own names
BATCHER_SETTINGS = ("max_batch_size", "max_queue_delay_ms", "max_queue_rows", "inline_compute_ms")


def _ids_row(row: Sequence[int] | np.ndarray, max_len: int, vocab: int, where: str) -> np.ndarray:
    """One row of token ids as int64, or the refusal that names what is wrong with it."""
    try:
        ids = np.asarray(row, dtype=np.int64)
    except (OverflowError, ValueError, TypeError):
        j = next((j for j, x in enumerate(row) if not -(2**63) <= x < 2**63), None)
        raise InvalidInput(
            "token ids must be 64-bit integers", where if j is None else f"{where}.{j}"
        ) from None
    if ids.ndim != 1 or ids.size == 0:
        raise InvalidInput("each row needs at least one token", where)
    if ids.size > max_len:
        raise InvalidInput(f"sequence of {ids.size} tokens is above the model's maximum of {max_len}", where)
    bad = np.flatnonzero((ids < 0) | (ids >= vocab))
    if bad.size:
        j = int(bad[0])
        raise InvalidInput(f"token id {int(ids[j])} is outside the vocabulary [0, {vocab})", f"{where}.{j}")
    return ids


def _mask_row(row: Sequence[int] | np.ndarray, ids: np.ndarray, where: str) -> np.ndarray:
    try:
        mask = np.asarray(row, dtype=np.int64)
    except (OverflowError, ValueError):
        raise InvalidInput("mask values must be 0 or 1", where) from None
    if mask.shape != ids.shape:
        raise InvalidInput(f"attention_mask row has {mask.size} values, input_ids row has {ids.size}", where)
    bad = np.flatnonzero((mask != 0) & (mask != 1))
    if bad.size:
        raise InvalidInput("mask values must be 0 or 1", f"{where}.{int(bad[0])}")
    if not mask.any():
        raise InvalidInput("a row's mask needs at least one 1", where)
    # Fused attention (model.opt.onnx, model.gpu.onnx) reads each row's length, not its mask: a
    # row must be its tokens then padding, or the answer would depend on the variant served.
    gap = np.flatnonzero(mask[: int(np.flatnonzero(mask)[-1])] == 0)
    if gap.size:
        raise InvalidInput("mask must be 1s then 0s (padding only at the end)", f"{where}.{int(gap[0])}")
    return mask


class Service:
    def __init__(self, settings: ServiceSettings, *, gpu_metrics: bool = True) -> None:
        self.settings = settings
        self.metrics = Metrics(gpu=gpu_metrics)
        self.models: dict[str, AnyModel] = {}
        self.draining = False
        self.started = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        s = self.settings
        found = repository.discover(s.model_repository, s.models)
        models: list[LoadedModel | FailedModel] = [
            f if isinstance(f, FailedModel) else await asyncio.to_thread(repository.load, f, s, len(found))
            for f in found
        ]
        loaded = iter(repository.share_tokenizers([m for m in models if isinstance(m, LoadedModel)]))
        for m in models:
            entry = m if isinstance(m, FailedModel) else await self._serve(next(loaded))
            self.models[entry.name] = entry
            self.metrics.model_ready.labels(entry.name).set(1 if isinstance(entry, Model) else 0)
        self.started = True
        print(self.summary(), flush=True)

    async def _serve(self, loaded: LoadedModel) -> Model:
        """`loaded` with its batcher started and its waiting room: a Model that serves."""
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
            **{k: getattr(s, k) for k in BATCHER_SETTINGS},
        )
        await b.start()
        return Model.serving(loaded, b, WaitingRoom(b, s.admission_wait_ms / 1000.0))

    def _broken(self, name: str, exc: BaseException) -> None:
        """The model's batcher stopped (logged there): the model no longer serves, and says so."""
        was = self.models[name]
        error = f"batcher stopped: {type(exc).__name__}: {exc}"
        self.models[name] = FailedModel(name, error, was.load_seconds)
        self.metrics.model_ready.labels(name).set(0)

    def serving(self) -> list[Model]:
        return [m for m in self.models.values() if isinstance(m, Model)]

    def summary(self) -> str:
        models = [
            {
                "name": e.name,
                "state": e.state,
                "provider": e.provider if isinstance(e, Model) else None,
                "variant": e.variant if isinstance(e, Model) else None,
                "parity": e.served.status if isinstance(e, Model) else None,
                "error": e.error if isinstance(e, FailedModel) else None,
                "load_s": round(e.load_seconds, 3),
                "cuda_graphs": e.runtime.graph_figures() if isinstance(e, Model) else None,
            }
            for e in self.models.values()
        ]
        return json.dumps(
            {"event": "started", "settings": self.settings.model_dump(mode="json"), "models": models},
            sort_keys=True,
        )

    def begin_shutdown(self) -> None:
        """SIGTERM: new requests get 503, queued work runs at once. Safe from a signal handler."""
        self.draining = True
        if self._loop is not None and not self._loop.is_closed():
            for m in self.serving():
                self._loop.call_soon_threadsafe(m.batcher.flush)
                self._loop.call_soon_threadsafe(m.room.refuse_all)

    async def stop(self) -> None:
        self.draining = True
        grace = self.settings.shutdown_grace_s
        results = await asyncio.gather(*(m.batcher.stop(grace) for m in self.serving()))
        if not all(results):
            log.error("shutdown: some requests were still queued after %.1f s", grace)

    @property
    def ready(self) -> bool:
        if self.draining or not self.started:
            return False
        states = [isinstance(e, Model) for e in self.models.values()]
        if not states:
            return False
        return all(states) if self.settings.require_all_models else any(states)

    # lookup ---------------------------------------------------------------------------
    def model_label(self, name: str | None) -> str:
        return name if name in self.models else UNKNOWN_MODEL

    def known(self, name: str, field: str | None = "name") -> AnyModel:
        """The model of that name, serving or not (listing, statistics)."""
        entry = self.models.get(name)
        if entry is None:
            raise UnknownModel(name, field)
        return entry

    def model(self, name: str, field: str | None = "name") -> Model:
        """The model of that name, loaded and serving: the one readiness test of every route."""
        entry = self.known(name, field)
        if isinstance(entry, FailedModel):
            raise ModelNotReady.of(name, entry.error, field)
        return entry

    # validation ------------------------------------------------------------------------
    def check_rows(self, rows: int, field: str) -> None:
        if rows == 0:
            raise InvalidInput("empty batch: give at least one row", field)
        if rows > self.settings.max_batch_size:
            raise InvalidInput(
                f"batch of {rows} rows is above the limit of {self.settings.max_batch_size}", field
            )

    @staticmethod
    def tokenize(entry: Model, texts: Sequence[str]) -> list[list[str]]:
        """Each text's tokens by the model's tokenizer: the costly part of encoding, which
        /v1/compare does once per tokenizer rather than once per model."""
        return [entry.tokenizer.tokenize(text) for text in texts]

    def encode_texts(
        self,
        entry: Model,
        texts: Sequence[str],
        field: str = "texts",
        truncate: bool = False,
        tokens: list[list[str]] | None = None,
    ) -> Encoded:
        """Token ids per text, the tokens each row keeps, and whether it was cut; `tokens`: the
        texts already tokenized by this model's tokenizer.

        A text longer than the model's maximum is refused (naming the row and its token count)
        unless the request says `truncate` (TEI's rule): silently cutting a 500 KB text to 64
        tokens answered a question nobody asked.
        """
        self.check_rows(len(texts), field)
        tok, m = entry.tokenizer, entry.manifest
        limit = min(tok.max_length, m.max_sequence_length)
        rows, kept, cut = [], [], []
        for i, words in enumerate(self.tokenize(entry, texts) if tokens is None else tokens):
            n = len(words)
            if n > limit and not truncate:
                raise InvalidInput(
                    f"text has {n} tokens, above the model's maximum of {limit}; shorten it or "
                    'send "truncate": true',
                    f"{field}.{i}",
                )
            row = np.asarray(tok.ids(words, limit), dtype=np.int64)
            rows.append(row)
            kept.append(len(row))
            cut.append(n > limit)
        return rows, kept, cut

    def check_ids(
        self,
        entry: Model,
        input_ids: Sequence[Sequence[int]] | np.ndarray,
        attention_mask: Sequence[Sequence[int]] | np.ndarray | None,
        ids_field: str = tensors.INPUT_IDS,
        mask_field: str = tensors.ATTENTION_MASK,
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Validate token ids (+ mask) against the model; rows trimmed of trailing padding."""
        m = entry.manifest
        self.check_rows(len(input_ids), ids_field)
        if attention_mask is not None and len(attention_mask) != len(input_ids):
            raise InvalidInput(
                f"attention_mask has {len(attention_mask)} rows, input_ids has {len(input_ids)}", mask_field
            )
        ids_rows, mask_rows = [], []
        for i, row in enumerate(input_ids):
            ids = _ids_row(row, m.max_sequence_length, m.vocab_size, f"{ids_field}.{i}")
            mask = (
                np.ones_like(ids)
                if attention_mask is None
                else _mask_row(attention_mask[i], ids, f"{mask_field}.{i}")
            )
            end = int(np.flatnonzero(mask)[-1]) + 1
            ids_rows.append(ids[:end])
            mask_rows.append(mask[:end])
        return ids_rows, mask_rows

    # admission -------------------------------------------------------------------------
    def retry_after(self, b: DynamicBatcher | None = None) -> int:
        """Seconds to come back: the queue's measured drain time, never below the configured value."""
        return max(self.settings.retry_after_s, b.retry_after_s() if b is not None else 0)

    async def admission(self, name: str) -> ServiceError | None:
        """The refusal of a work request for `name` decided before its body is read, or None.

        Under overload, parsing and validating a body only to refuse it is what starves the
        model (useful work fell to 13% of capacity): a full queue is answered here, from the
        URL alone, after a bounded wait for room (service.admission). Unknown or unready
        models are left to the route, which names the field.
        """
        entry = self.models.get(name)
        if not isinstance(entry, Model) or await entry.room.enter():
            return None
        b = entry.batcher
        if not b.accepting:
            self.metrics.rejected(name, batcher.ShuttingDown.reason)
            return ShuttingDown(self.retry_after(b))
        self.metrics.rejected(name, batcher.QueueFull.reason)
        return Overloaded(f"queue of {name} is full ({b.queued_rows} rows waiting)", self.retry_after(b))

    # inference -------------------------------------------------------------------------
    async def infer(
        self, entry: Model, ids_rows: list[np.ndarray], mask_rows: list[np.ndarray] | None = None
    ) -> BatchResult:
        b = entry.batcher
        try:
            return await b.submit(ids_rows, mask_rows)
        except batcher.QueueFull as exc:
            raise Overloaded(str(exc), self.retry_after(b)) from None
        except batcher.ShuttingDown as exc:
            raise ShuttingDown(self.retry_after(b), str(exc)) from None
        except batcher.RequestTimeout as exc:
            raise Timeout(str(exc)) from None
        except batcher.BatchFailed as exc:  # logged once by the batcher, with its cause
            raise InternalError(str(exc)) from None
        except batcher.BatcherError as exc:
            raise InvalidInput(str(exc)) from None

    @staticmethod
    def timing(result: BatchResult, t_start: float) -> dict[str, float | int]:
        """Where a request's time went (v1's `timing`, v2's response `parameters`)."""
        return {
            "queue_ms": round(result.queue_ms, 3),
            "compute_ms": round(result.compute_ms, 3),
            "total_ms": round((time.perf_counter() - t_start) * 1000.0, 3),
            "batch_size": result.batch_size,
            "padded_length": result.padded_length,
        }

    def predictions(self, entry: Model, result: BatchResult, top_k: int, embedding: bool) -> list[dict]:
        labels = entry.manifest.labels
        logits = result.logits.astype(np.float64)
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)
        k = min(top_k, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        out = []
        for r in range(probs.shape[0]):
            top = [
                {
                    "label": labels[j] if j < len(labels) else str(j),
                    "label_id": int(j),
                    "score": float(probs[r, j]),
                }
                for j in order[r]
            ]
            p = {**top[0], "top_k": top}
            if embedding:
                p[tensors.EMBEDDING] = result.embedding[r].astype(float).tolist()
            out.append(p)
        return out

    async def predict(
        self,
        entry: Model,
        ids_rows: list[np.ndarray],
        mask_rows: list[np.ndarray] | None,
        top_k: int,
        embedding: bool,
        t_start: float | None = None,
    ) -> dict:
        t0 = t_start or time.perf_counter()
        result = await self.infer(entry, ids_rows, mask_rows)
        preds = self.predictions(entry, result, top_k, embedding)
        return {"model": entry.name, "predictions": preds, "timing": self.timing(result, t0)}
