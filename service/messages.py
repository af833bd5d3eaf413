"""The seam between the HTTP front and the engine: every message that crosses it, typed, and the
one encoder/decoder (`Codec`). Both sides import this module; it imports neither ONNX Runtime nor
the engine, so a front process never loads the runtime.

- Requests (`Request`): `Describe`, `Infer`, `Admit`, `StatsQuery`, `MetricsQuery`; replies
  (`Reply`, each with the engine's model-state `version`): `Description`, `Inferred`, `Admitted`,
  `Statistics`, `MetricsReply`, and `Refused` (a refusal, by a stable code: `refusal_of`,
  `Refusal.error`). msgspec structs, tagged, so one decoder reads any of them.
- On the wire a message is `[header, *tensors]`: the header is the struct as msgpack with each
  numpy array replaced by its dtype, shape and side-frame index; the arrays' bytes go as their
  own frames, never copied into the header (vLLM's serial_utils does the same).
- In one process (`--single-process`) the same structs are handed over without encoding
  (service.front.client), so both shapes take one path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from service import errors
from service.errors import ServiceError

Frame = bytes | memoryview


# rows ----------------------------------------------------------------------------------------
def join_rows(rows: list[np.ndarray]) -> tuple[list[int], np.ndarray]:
    """Rows as their lengths and one flat int64 array (what crosses)."""
    flat = rows[0] if len(rows) == 1 else np.concatenate(rows)
    return [len(r) for r in rows], flat.astype(np.int64, copy=False)


def split_rows(flat: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """Rows of a flat array, by their lengths."""
    if len(lengths) == 1:
        return [flat]
    return np.split(flat, np.cumsum(lengths)[:-1]) if lengths else []


# what the engine answers with (the batcher's own types) -------------------------------------
class BatchResult(msgspec.Struct):
    """One request's slice of a batch and how that batch went."""

    logits: np.ndarray
    embedding: np.ndarray
    queue_ms: float
    compute_ms: float
    batch_size: int  # rows in the executed batch (all requests together)
    padded_length: int  # sequence length the batch was padded to


class Stats(msgspec.Struct):
    """Cumulative counters for the v2 /stats endpoint."""

    success_count: int = 0
    fail_count: int = 0
    inference_count: int = 0  # rows
    execution_count: int = 0  # batches
    queue_ns: int = 0
    compute_ns: int = 0
    success_ns: int = 0
    fail_ns: int = 0
    last_inference_ms: int = 0
    batch_sizes: dict[int, list[int]] = msgspec.field(default_factory=dict)  # size -> [count, ns]


class ModelFacts(msgspec.Struct, omit_defaults=True):
    """A model as the engine describes it: its state, and for one that serves what is not in its
    folder (the front reads manifest and tokenizer from the folder itself: service.catalog)."""

    name: str
    state: str
    load_seconds: float
    error: str | None = None
    served: dict[str, Any] | None = None  # service.runtime.variants.Served as a dict
    provider: str | None = None
    providers: list[str] = msgspec.field(default_factory=list)
    cuda_graphs: dict[str, Any] | None = None


class Family(msgspec.Struct, array_like=True):
    """A Prometheus metric family: name, help, type and samples (name, labels, value)."""

    name: str
    documentation: str
    type: str
    samples: list[tuple[str, dict[str, str], float]]


def families_out(fams: Iterable[Metric]) -> list[Family]:
    return [
        Family(f.name, f.documentation, f.type, [(s.name, s.labels, s.value) for s in f.samples])
        for f in fams
    ]


def families_in(fams: list[Family]) -> list[Metric]:
    out = []
    for f in fams:
        m = Metric(f.name, f.documentation, f.type)
        m.samples = [Sample(n, labels, value) for n, labels, value in f.samples]
        out.append(m)
    return out


# refusals by a stable code -------------------------------------------------------------------
def _rebuilt(cls: type[ServiceError]) -> Any:
    def make(r: Refusal) -> ServiceError:
        exc = cls(r.message, r.field)
        exc.retry_after = r.retry_after
        return exc

    return make


# code -> how to rebuild it; the most specific class first (refusal_of takes the first match)
REFUSALS: dict[str, tuple[type[ServiceError], Any]] = {
    "invalid_input": (errors.InvalidInput, _rebuilt(errors.InvalidInput)),
    "not_ready": (errors.ModelNotReady, _rebuilt(errors.ModelNotReady)),
    "overloaded": (errors.Overloaded, lambda r: errors.Overloaded(r.message, r.retry_after or 0)),
    "shutting_down": (errors.ShuttingDown, lambda r: errors.ShuttingDown(r.retry_after or 0, r.message)),
    "timeout": (errors.Timeout, _rebuilt(errors.Timeout)),
    "internal": (errors.InternalError, _rebuilt(errors.InternalError)),
}


class Refusal(msgspec.Struct):
    """A service.errors refusal as it crosses: a stable code, never a class name."""

    code: str
    message: str
    field: str | None = None
    retry_after: int | None = None

    def error(self) -> ServiceError:
        """The same refusal on this side (an unknown code: an internal error, message kept)."""
        _, make = REFUSALS.get(self.code, REFUSALS["internal"])
        return make(self)


def refusal_of(exc: ServiceError) -> Refusal:
    code = next((c for c, (cls, _) in REFUSALS.items() if isinstance(exc, cls)), "internal")
    return Refusal(code, exc.message, exc.field, exc.retry_after)


# requests ------------------------------------------------------------------------------------
class Describe(msgspec.Struct, tag="describe"):
    pass


class Infer(msgspec.Struct, tag="infer"):
    """Token-id rows for a model, flat (`join_rows`) with their lengths."""

    model: str
    lengths: list[int]
    ids: np.ndarray
    mask: np.ndarray | None = None
    request_id: str = "-"

    @classmethod
    def of(
        cls, model: str, ids_rows: list[np.ndarray], mask_rows: list[np.ndarray] | None, request_id: str
    ) -> Infer:
        lengths, ids = join_rows(ids_rows)
        mask = None if mask_rows is None else join_rows(mask_rows)[1]
        return cls(model, lengths, ids, mask, request_id)

    def ids_rows(self) -> list[np.ndarray]:
        return split_rows(self.ids, self.lengths)

    def mask_rows(self) -> list[np.ndarray] | None:
        return None if self.mask is None else split_rows(self.mask, self.lengths)


class Admit(msgspec.Struct, tag="admit"):
    model: str


class StatsQuery(msgspec.Struct, tag="stats"):
    model: str


class MetricsQuery(msgspec.Struct, tag="metrics"):
    pass


Request = Describe | Infer | Admit | StatsQuery | MetricsQuery


# replies -------------------------------------------------------------------------------------
class Answer(msgspec.Struct, kw_only=True):
    """What every reply carries: the engine's generation, its count of model state changes (a
    front that sees it change describes the models again)."""

    generation: int = 0


class Description(Answer, tag="description", kw_only=True):
    pid: int
    models: list[ModelFacts]


class Inferred(Answer, tag="inferred", kw_only=True):
    """The rows' result, and whether the model's queue has room for the next request."""

    result: BatchResult
    has_room: bool


class Admitted(Answer, tag="admitted", kw_only=True):
    has_room: bool
    refusal: Refusal | None = None


class Statistics(Answer, tag="statistics", kw_only=True):
    stats: Stats | None


class MetricsReply(Answer, tag="metrics_reply", kw_only=True):
    families: list[Family]


class Refused(Answer, tag="refused", kw_only=True):
    refusal: Refusal


Reply = Description | Inferred | Admitted | Statistics | MetricsReply | Refused


# the one encoder/decoder ---------------------------------------------------------------------
class Codec:
    """Messages to frames and back. Arrays cross as raw side frames (their own buffers, not
    copied); the header carries `[dtype, shape, frame index]` in their place. One per event
    loop: encoding and decoding each use a scratch list, so calls must not interleave."""

    def __init__(self) -> None:
        self._enc = msgspec.msgpack.Encoder(enc_hook=self._enc_hook)
        self._requests = msgspec.msgpack.Decoder(Request, dec_hook=self._dec_hook)
        self._replies = msgspec.msgpack.Decoder(Reply, dec_hook=self._dec_hook)
        self._out: list[Frame] = []
        self._in: list[Frame] = []

    def encode(self, msg: Request | Reply) -> list[Frame]:
        self._out = out = [b""]
        try:
            out[0] = self._enc.encode(msg)
        finally:
            self._out = []
        return out

    def request(self, frames: list[Frame]) -> Request:
        return self._decode(self._requests, frames)

    def reply(self, frames: list[Frame]) -> Reply:
        return self._decode(self._replies, frames)

    def _decode(self, decoder: msgspec.msgpack.Decoder, frames: list[Frame]) -> Any:
        self._in = frames
        try:
            return decoder.decode(frames[0])
        finally:
            self._in = []

    def _enc_hook(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            arr = np.ascontiguousarray(obj)
            self._out.append(arr.data.cast("B") if arr.size else b"")  # len() in bytes
            return (arr.dtype.str, arr.shape, len(self._out) - 1)
        raise NotImplementedError(f"{type(obj).__name__} does not cross the seam")

    def _dec_hook(self, kind: type, obj: Any) -> Any:
        if kind is np.ndarray:
            dtype, shape, index = obj
            return np.frombuffer(self._in[index], dtype=dtype).reshape(shape)
        raise NotImplementedError(f"{kind} does not cross the seam")
