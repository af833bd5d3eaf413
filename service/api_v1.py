"""Simple JSON API: /v1/models, /v1/models/{name}/predict, /v1/compare.

Errors: `{"error": "...", "field": "..."}` (field: dotted path into the body, `name` for the
model in the URL, `body` for the body as a whole).
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request

from service.core import ApiError, Service
from service.repository import ModelEntry
from service.schemas import (
    CompareRequest,
    CompareResponse,
    ErrorResponse,
    ModelList,
    ModelSummary,
    PredictRequest,
    PredictResponse,
)

router = APIRouter(prefix="/v1", tags=["v1"])

ERRORS = {
    s: {"model": ErrorResponse}
    for s in (400, 404, 413, 422, 429, 503, 504)
}  # fmt: skip


def _svc(request: Request) -> Service:
    return request.app.state.service


def _start(request: Request) -> float:
    return request.scope.get("h2h.start") or time.perf_counter()


def summary(entry: ModelEntry) -> ModelSummary:
    m = entry.manifest
    manifest = None
    if m is not None:
        manifest = m.model_dump(
            include={
                "arch", "layers", "heads", "d_model", "head_dim", "ffn_dim", "norm", "params",
                "flops_per_token", "max_sequence_length", "vocab_size", "opset", "sha256",
                "test_accuracy", "validation_accuracy", "random_init", "created",
            }
        )  # fmt: skip
        manifest["num_labels"] = len(m.labels)
        manifest["variants"] = sorted(m.variants)
    return ModelSummary(
        name=entry.name, state=entry.state, error=entry.error, provider=entry.provider,
        providers=entry.runtime.providers if entry.runtime else [], variant=entry.variant,
        manifest=manifest,
    )  # fmt: skip


@router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """Every model in the repository: state (ready/failed, with the error), provider, variant."""
    return ModelList(models=[summary(e) for e in _svc(request).models.values()])


@router.get("/models/{name}", response_model=ModelSummary, responses=ERRORS)
async def get_model(name: str, request: Request) -> ModelSummary:
    entry = _svc(request).models.get(name)
    if entry is None:
        raise ApiError(404, f"unknown model {name[:80]!r}", "name")
    return summary(entry)


async def _predict_one(
    svc: Service, entry: ModelEntry, body: PredictRequest | CompareRequest, t0: float
) -> dict:
    if isinstance(body, PredictRequest) and body.input_ids is not None:
        ids_rows, mask_rows = svc.check_ids(entry, body.input_ids, body.attention_mask)
    else:
        ids_rows, mask_rows = svc.encode_texts(entry, body.texts or []), None
    return await svc.predict(entry, ids_rows, mask_rows, body.top_k, body.return_embedding, t0)


@router.post(
    "/models/{name}/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    response_model_exclude_none=True,
)
async def predict(name: str, body: PredictRequest, request: Request) -> dict:
    """Classify texts (tokenized by the server) or token ids; returns label, score, top-k,
    optional embedding and the batch's timing."""
    t0 = _start(request)
    svc = _svc(request)
    entry = svc.model(name)
    if (body.texts is None) == (body.input_ids is None):
        raise ApiError(422, "give exactly one of texts or input_ids", "texts")
    if body.attention_mask is not None and body.input_ids is None:
        raise ApiError(422, "attention_mask needs input_ids", "attention_mask")
    return await _predict_one(svc, entry, body, t0)


@router.post("/compare", response_model=CompareResponse, responses=ERRORS, response_model_exclude_none=True)
async def compare(body: CompareRequest, request: Request) -> dict:
    """The same texts through every model (or those named), answers and timings side by side."""
    t0 = _start(request)
    svc = _svc(request)
    names = body.models or [n for n, e in svc.models.items() if e.ready]
    if not names:
        raise ApiError(503, "no model is ready", "models")
    entries = [svc.model(n, f"models.{i}") for i, n in enumerate(names)]
    for e in entries:  # validate for every model before queueing anything
        svc.encode_texts(e, body.texts)
    results = await asyncio.gather(*(_predict_one(svc, e, body, t0) for e in entries), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return {"results": dict(zip(names, results, strict=True))}
