"""KServe v2 / Open Inference Protocol (HTTP) with Triton's binary tensor extension.

Errors: `{"error": "..."}` with a 4xx status (5xx only for 503 not-ready / shutting down and
504 timeouts).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from contract import tensors
from service import __version__
from service.bodies import RawRequest, RawResponse
from service.core import ApiError, Service
from service.repository import ModelEntry
from service.schemas import V2ErrorResponse
from service.v2codec import HEADER, V2Error, encode_response, parse_request
from service.v2schemas import InferenceResponse, infer_openapi

router = APIRouter(prefix="/v2", tags=["v2"])

PLATFORM = "onnxruntime_onnx"
VERSION = "1"
OUTPUTS = tensors.OUTPUTS
EXTENSIONS = ["binary_tensor_data", "statistics", "model_configuration"]

_MEANING = {
    400: "a body that breaks the protocol or the model's inputs (the message says what)",
    404: "no model of that name, or a version other than 1",
    413: "body above H2H_MAX_BODY_BYTES",
    429: "the model's queue is full; retry after the Retry-After header's seconds",
    503: "the model is not ready, or the server is shutting down",
    504: "no answer within H2H_REQUEST_TIMEOUT_S",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": V2ErrorResponse, "description": _MEANING[s]} for s in statuses}


INFER_ERRORS = _errors(400, 404, 413, 429, 503, 504)
MODEL_ERRORS = _errors(404, 503)


def _svc(request: Request) -> Service:
    return request.app.state.service


def _known(svc: Service, name: str) -> ModelEntry:
    entry = svc.models.get(name)
    if entry is None:
        raise ApiError(404, f"unknown model {name[:80]!r}")
    return entry


def _version(version: str | None) -> None:
    if version is not None and version != VERSION:
        raise ApiError(404, f"model version {version[:16]!r} does not exist (only {VERSION})")


@router.get("")
async def server_metadata() -> dict:
    return {"name": "headtohead", "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live")
async def live() -> dict:
    return {"live": True}


class Readiness(BaseModel):
    ready: bool
    draining: bool


class ModelReadiness(BaseModel):
    name: str
    ready: bool


_NOT_READY = {503: {"model": Readiness, "description": "not ready, or draining after SIGTERM"}}


@router.get("/health/ready", response_model=Readiness, responses=_NOT_READY)
async def ready(request: Request) -> JSONResponse:
    svc = _svc(request)
    ok = svc.ready
    return JSONResponse({"ready": ok, "draining": svc.draining}, status_code=200 if ok else 503)


def _metadata(svc: Service, name: str) -> dict:
    entry = _known(svc, name)
    if not entry.ready or entry.manifest is None:
        raise ApiError(503, f"model {name} is not ready: {entry.error}")
    m = entry.manifest
    return {
        "name": entry.name,
        "versions": [VERSION],
        "platform": PLATFORM,
        "inputs": [t.model_dump() for t in m.inputs],
        "outputs": [t.model_dump() for t in m.outputs],
    }


@router.get("/models/{name}", responses=MODEL_ERRORS)
async def model_metadata(name: str, request: Request) -> dict:
    return _metadata(_svc(request), name)


@router.get("/models/{name}/versions/{version}", responses=MODEL_ERRORS)
async def model_version_metadata(name: str, version: str, request: Request) -> dict:
    _version(version)
    return _metadata(_svc(request), name)


def _model_ready(svc: Service, name: str) -> JSONResponse:
    entry = _known(svc, name)
    if not entry.ready:
        return JSONResponse({"error": f"model {name} is not ready: {entry.error}"}, status_code=503)
    return JSONResponse({"name": name, "ready": True})


@router.get("/models/{name}/ready", response_model=ModelReadiness, responses=MODEL_ERRORS)
async def model_ready(name: str, request: Request) -> JSONResponse:
    return _model_ready(_svc(request), name)


@router.get("/models/{name}/versions/{version}/ready", response_model=ModelReadiness, responses=MODEL_ERRORS)
async def model_version_ready(name: str, version: str, request: Request) -> JSONResponse:
    _version(version)
    return _model_ready(_svc(request), name)


_TYPE = {"INT64": "TYPE_INT64", "FP32": "TYPE_FP32", "FP16": "TYPE_FP16"}


@router.get("/models/{name}/config", responses=MODEL_ERRORS)
async def model_config(name: str, request: Request) -> dict:
    """Triton-style model configuration (perf_analyzer reads it); dims exclude the batch."""
    svc = _svc(request)
    entry = _known(svc, name)
    if not entry.ready or entry.manifest is None:
        raise ApiError(503, f"model {name} is not ready: {entry.error}")
    m, s = entry.manifest, svc.settings
    return {
        "name": name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "max_batch_size": s.max_batch_size,
        "input": [{"name": t.name, "data_type": _TYPE[t.datatype], "dims": t.shape[1:]} for t in m.inputs],
        "output": [{"name": t.name, "data_type": _TYPE[t.datatype], "dims": t.shape[1:]} for t in m.outputs],
        "dynamic_batching": {
            "max_queue_delay_microseconds": int(s.max_queue_delay_ms * 1000),
            "default_queue_policy": {"max_queue_size": s.max_queue_rows},
        },
        "parameters": {
            "provider": {"string_value": entry.provider or ""},
            "variant": {"string_value": entry.variant or ""},
            "max_sequence_length": {"string_value": str(m.max_sequence_length)},
        },
    }


@router.get("/models/{name}/stats", responses=_errors(404))
async def model_stats(name: str, request: Request) -> dict:
    svc = _svc(request)
    entry = _known(svc, name)
    b = svc.batchers.get(name)
    if b is None:
        return {"model_stats": []}
    st = b.stats
    return {
        "model_stats": [
            {
                "name": entry.name,
                "version": VERSION,
                "last_inference": st.last_inference_ms,
                "inference_count": st.inference_count,
                "execution_count": st.execution_count,
                "inference_stats": {
                    "success": {"count": st.success_count, "ns": st.success_ns},
                    "fail": {"count": st.fail_count, "ns": st.fail_ns},
                    "queue": {"count": st.inference_count, "ns": st.queue_ns},
                    "compute_infer": {"count": st.execution_count, "ns": st.compute_ns},
                },
                "batch_stats": [
                    {"batch_size": size, "compute_infer": {"count": c, "ns": ns}}
                    for size, (c, ns) in sorted(st.batch_sizes.items())
                ],
            }
        ]
    }


_INFER = {"response_model": InferenceResponse, "responses": INFER_ERRORS, "openapi_extra": infer_openapi()}


@router.post("/models/{name}/infer", **_INFER)
async def infer(name: str, request: Request) -> Response:
    """Inference in the KServe v2 JSON form, or Triton's binary tensor extension."""
    raw = await RawRequest.from_request(request, name)
    return (await infer_raw(_svc(request), raw)).to_response()


@router.post("/models/{name}/versions/{version}/infer", **_INFER)
async def infer_version(name: str, version: str, request: Request) -> Response:
    """As /v2/models/{name}/infer; the only version is 1."""
    raw = await RawRequest.from_request(request, name, version)
    return (await infer_raw(_svc(request), raw)).to_response()


async def infer_raw(svc: Service, raw: RawRequest) -> RawResponse:
    """The infer route's work, bytes to bytes (the middleware calls it directly for speed)."""
    _version(raw.version)
    entry = svc.model(raw.name)
    try:
        req = parse_request(raw.body, raw.headers.get(HEADER.lower()))
    except V2Error as exc:
        raise ApiError(400, str(exc)) from None
    unknown = set(req.inputs) - set(tensors.INPUTS)
    if unknown:
        raise ApiError(400, f"unknown input {sorted(unknown)[0][:64]!r} (inputs: {', '.join(tensors.INPUTS)})")
    if tensors.INPUT_IDS not in req.inputs:
        raise ApiError(400, f"input {tensors.INPUT_IDS!r} is required")
    ids = req.inputs[tensors.INPUT_IDS]
    mask = req.inputs.get(tensors.ATTENTION_MASK)
    for tname, arr in ((tensors.INPUT_IDS, ids), (tensors.ATTENTION_MASK, mask)):
        if arr is None:
            continue
        if arr.dtype.kind not in "iu":
            raise ApiError(400, f"input {tname!r} must be INT64 (or INT32), got {arr.dtype}")
        if arr.ndim != 2:
            raise ApiError(400, f"input {tname!r} must have shape [batch, sequence], got {list(arr.shape)}")
    if mask is not None and mask.shape != ids.shape:
        raise ApiError(
            400, f"attention_mask shape {list(mask.shape)} differs from input_ids {list(ids.shape)}"
        )
    try:
        ids_rows, mask_rows = svc.check_ids(
            entry, ids.astype(np.int64), None if mask is None else mask.astype(np.int64)
        )
    except ApiError as exc:
        raise ApiError(400 if exc.status == 422 else exc.status, f"{exc.field}: {exc.message}") from None
    wanted = req.outputs if req.outputs is not None else [(o, req.binary_output) for o in OUTPUTS]
    for oname, _ in wanted:
        if oname not in OUTPUTS:
            raise ApiError(400, f"unknown output {oname[:64]!r} (outputs: {', '.join(OUTPUTS)})")
    result = await svc.infer(entry, ids_rows, mask_rows)
    values = {tensors.LOGITS: result.logits, tensors.EMBEDDING: result.embedding}
    head = {"model_name": raw.name, "model_version": VERSION}
    if req.id is not None:
        head["id"] = req.id
    head["parameters"] = {
        "queue_ms": round(result.queue_ms, 3),
        "compute_ms": round(result.compute_ms, 3),
        "total_ms": round((time.perf_counter() - raw.start) * 1000.0, 3),
        "batch_size": result.batch_size,
        "padded_length": result.padded_length,
    }
    body, headers = encode_response(head, [(o, values[o], binary) for o, binary in wanted])
    return RawResponse(body, headers)
