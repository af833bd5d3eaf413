"""Simple JSON API: /v1/models, /v1/models/{name}/predict, /v1/compare.

Errors: `{"error": "...", "field": "..."}` (field: dotted path into the body, `name` for the
model in the URL, `body` for the body as a whole).
"""

from __future__ import annotations

import asyncio
import inspect

from fastapi import APIRouter
from pydantic import BaseModel

from contract.tensors import ATTENTION_MASK, INPUT_IDS
from service.api.schemas import (
    CompareRequest,
    CompareResponse,
    ErrorResponse,
    ModelList,
    ModelSummary,
    PredictRequest,
    PredictRequestInts,
    PredictResponse,
)
from service.catalog import AnyModel, FailedModel, Model
from service.errors import InvalidInput, MalformedBody, ModelNotReady, ServiceError
from service.front import inputs, outputs
from service.front.inputs import Encoded
from service.front.registry import Registry
from service.http.bodies import RawRequest, RawResponse
from service.http.deps import KnownModel, RegistryDep
from service.http.protocol import SHARED_STATUSES, Protocol
from service.http.routes import InferenceRoute, RawHandler

_MEANING = {
    400: "malformed JSON, or a body that is not UTF-8",
    404: "no model of that name (field `name`, or `models.N` for /v1/compare)",
    413: "body above H2H_MAX_BODY_BYTES",
    422: "a field breaks a rule (the body says which field and why)",
    429: "the model's queue is full; retry after the Retry-After header's seconds",
    503: "the model is not ready, or the server is shutting down (Retry-After)",
    504: "no answer within H2H_REQUEST_TIMEOUT_S",
}
WORK_ERRORS = {s: {"model": ErrorResponse, "description": d} for s, d in _MEANING.items()}
MODEL_ERRORS = {404: WORK_ERRORS[404]}

# a full queue (Overloaded) is answered with H2H_REJECT_STATUS, 429 by default
STATUSES: dict[type[ServiceError], int] = {
    MalformedBody: 400,
    InvalidInput: 422,
    **SHARED_STATUSES,
}


def error_body(exc: ServiceError) -> dict[str, str | None]:
    return {"error": exc.message, "field": exc.field}


PROTOCOL = Protocol(STATUSES, error_body)
router = APIRouter(prefix="/v1", tags=["v1"])


def summary(entry: AnyModel) -> ModelSummary:
    if isinstance(entry, FailedModel):
        return ModelSummary(name=entry.name, state=entry.state, error=entry.error, providers=[])
    m = entry.manifest
    manifest = m.model_dump(
        include={
            "arch",
            "layers",
            "heads",
            "d_model",
            "head_dim",
            "ffn_dim",
            "norm",
            "params",
            "flops_per_token",
            "max_sequence_length",
            "vocab_size",
            "opset",
            "sha256",
            "test_accuracy",
            "validation_accuracy",
            "test_examples",
            "random_init",
            "created",
        }
    )
    manifest["num_labels"] = len(m.labels)
    manifest["variants"] = sorted(m.variants)
    return ModelSummary(
        name=entry.name,
        state=entry.state,
        provider=entry.provider,
        providers=entry.providers,
        variant=entry.variant,
        parity=entry.served.as_dict(),
        cuda_graphs=entry.cuda_graphs,
        manifest=manifest,
    )


@router.get("/models", response_model=ModelList)
async def list_models(svc: RegistryDep) -> ModelList:
    """Every model in the repository: state (ready/failed, with the error), provider, variant."""
    return ModelList(models=[summary(e) for e in svc.models.values()])


@router.get("/models/{name}", response_model=ModelSummary, responses=MODEL_ERRORS)
async def get_model(entry: KnownModel) -> ModelSummary:
    return summary(entry)


# Tokenising is pure Python: ~0.5 ms for 32 short texts, but ~25 ms for a 1 MB body, which on the
# event loop would stall every other request. Large text batches go to a thread.
OFFLOAD_TEXT_CHARS = 64 * 1024


def _large(texts: list[str]) -> bool:
    return sum(len(t) for t in texts) > OFFLOAD_TEXT_CHARS


async def _encode(svc: Registry, entry: Model, texts: list[str], truncate: bool) -> Encoded:
    limit = svc.settings.max_batch_size
    if _large(texts):
        return await asyncio.to_thread(inputs.encode_texts, entry, texts, limit, truncate=truncate)
    return inputs.encode_texts(entry, texts, limit, truncate=truncate)


async def _encode_each(
    svc: Registry, entries: list[Model], texts: list[str], truncate: bool
) -> list[Encoded]:
    """The texts encoded for every model before anything is queued, tokenised once per
    tokenizer (models exported from one training split share theirs, see repository)."""
    limit = svc.settings.max_batch_size
    inputs.check_rows(len(texts), limit, "texts")
    big = _large(texts)
    tokens: dict[int, list[list[str]]] = {}
    encoded = []
    for e in entries:
        key = id(e.tokenizer)
        if key not in tokens:
            tokens[key] = (
                await asyncio.to_thread(inputs.tokenize, e, texts) if big else inputs.tokenize(e, texts)
            )
        encoded.append(inputs.encode_texts(e, texts, limit, truncate=truncate, tokens=tokens[key]))
    return encoded


async def _predict_one(
    svc: Registry,
    entry: Model,
    body: PredictRequest | CompareRequest,
    req: RawRequest,
    encoded: Encoded | None = None,
) -> dict:
    if isinstance(body, PredictRequest) and body.input_ids is not None:
        limit = svc.settings.max_batch_size
        # rows come back trimmed of their padding: every token kept is attended to, so no mask crosses
        ids_rows, _ = inputs.check_ids(entry, body.input_ids, body.attention_mask, limit)
        tokens, truncated = [len(r) for r in ids_rows], [False] * len(ids_rows)
    else:
        ids_rows, tokens, truncated = encoded or await _encode(svc, entry, body.texts, body.truncate)
    result = await svc.infer(entry, ids_rows, None, req.request_id)
    preds = outputs.predictions(entry, result, body.top_k, body.return_embedding)
    for p, n, cut in zip(preds, tokens, truncated, strict=True):
        p["tokens"], p["truncated"] = n, cut
    return {"model": entry.name, "predictions": preds, "timing": outputs.timing(result, req.start)}


def _predict_body(req: RawRequest) -> PredictRequest:
    """The body: JSON integers only, the usual case, parsed in pydantic-core alone; anything
    else (3.0 for 3, an error to name) by `PredictRequest` as before."""
    ctype = req.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() == "application/json":
        try:
            return PredictRequestInts.model_validate_json(req.body)
        except ValueError:  # pydantic's ValidationError
            pass
    return req.parse(PredictRequest)


async def _predict(svc: Registry, entry: Model, req: RawRequest) -> RawResponse:
    body = _predict_body(req)
    if (body.texts is None) == (body.input_ids is None):
        raise InvalidInput("give exactly one of texts or input_ids", "texts")
    if body.attention_mask is not None and body.input_ids is None:
        raise InvalidInput(f"{ATTENTION_MASK} needs {INPUT_IDS}", ATTENTION_MASK)
    return RawResponse.json(await _predict_one(svc, entry, body, req))


async def predict_raw(svc: Registry, req: RawRequest) -> RawResponse:
    """Classify texts (tokenized by the server) or token ids; returns label, score, top-k,
    optional embedding and the batch's timing."""
    return await _predict(svc, svc.model(req.name), req)


async def compare_raw(svc: Registry, req: RawRequest) -> RawResponse:
    """The same texts through every model (or those named), answers and timings side by side."""
    body = req.parse(CompareRequest)
    names = body.models or [m.name for m in svc.serving()]
    if not names:
        raise ModelNotReady("no model is ready", "models")
    entries = [svc.model(n, f"models.{i}") for i, n in enumerate(names)]
    encoded = await _encode_each(svc, entries, body.texts, body.truncate)
    results = await asyncio.gather(
        *(_predict_one(svc, e, body, req, enc) for e, enc in zip(entries, encoded, strict=True)),
        return_exceptions=True,
    )
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return RawResponse.json({"results": dict(zip(names, results, strict=True))})


def _route(
    path: str, request: type[BaseModel], response: type[BaseModel], handler: RawHandler
) -> InferenceRoute:
    return InferenceRoute(
        "POST",
        router.prefix + path,
        PROTOCOL,
        request,
        response,
        handler,
        name=handler.__name__.removesuffix("_raw"),
        description=inspect.getdoc(handler) or "",
        errors=WORK_ERRORS,
        tags=router.tags,
    )


ROUTES = (
    _route("/models/{name}/predict", PredictRequest, PredictResponse, predict_raw),
    _route("/compare", CompareRequest, CompareResponse, compare_raw),
)
