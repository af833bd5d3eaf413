"""KServe v2 / Open Inference Protocol (HTTP) with Triton's binary tensor extension.

Errors: `{"error": "..."}` with a 4xx status (5xx only for 503 not-ready / shutting down and
504 timeouts).
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from contract import tensors
from service import __version__
from service.api.schemas import V2ErrorResponse
from service.api.v2codec import HEADER, encode_response, parse_request
from service.api.v2schemas import InferenceRequest, InferenceResponse, infer_openapi
from service.catalog import Model
from service.errors import InvalidInput, ServiceError, UnknownVersion
from service.front import inputs, outputs
from service.front.registry import Registry
from service.http.bodies import RawRequest, RawResponse
from service.http.deps import KnownModel, ReadyModel, RegistryDep
from service.http.protocol import SHARED_STATUSES, Protocol
from service.http.routes import InferenceRoute

PLATFORM = "onnxruntime_onnx"
VERSION = "1"
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

# a full queue (Overloaded) is answered with H2H_REJECT_STATUS, 429 by default
STATUSES: dict[type[ServiceError], int] = {
    InvalidInput: 400,
    **SHARED_STATUSES,
}


def error_body(exc: ServiceError) -> dict[str, str]:
    """`{"error": ...}`: a body with no field, so an input error names its place in the message
    (`input_ids.0.3: ...`); the model's place is the URL."""
    if isinstance(exc, InvalidInput) and exc.field:
        return {"error": f"{exc.field}: {exc.message}"}
    return {"error": exc.message}


PROTOCOL = Protocol(STATUSES, error_body)
router = APIRouter(prefix="/v2", tags=["v2"])


def _version(version: str) -> None:
    if version != VERSION:
        raise UnknownVersion(version, VERSION)


def _versioned(name: str, version: str, svc: RegistryDep) -> Model:
    """ReadyModel at `version`: a version other than 1 is refused before the model is looked up."""
    _version(version)
    return svc.model(name)


ReadyVersion = Annotated[Model, Depends(_versioned)]


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
async def ready(svc: RegistryDep) -> JSONResponse:
    ok = svc.ready
    return JSONResponse({"ready": ok, "draining": svc.draining}, status_code=200 if ok else 503)


def _metadata(entry: Model) -> dict:
    m = entry.manifest
    return {
        "name": entry.name,
        "versions": [VERSION],
        "platform": PLATFORM,
        "inputs": [t.model_dump() for t in m.inputs],
        "outputs": [t.model_dump() for t in m.outputs],
    }


# A model that failed to load has no metadata (KServe: "a failed model metadata request must be
# indicated by an HTTP error status"; Triton answers an error too): 503 with its load error,
# what its readiness route says.
@router.get("/models/{name}", responses=MODEL_ERRORS)
async def model_metadata(entry: ReadyModel) -> dict:
    return _metadata(entry)


@router.get("/models/{name}/versions/{version}", responses=MODEL_ERRORS)
async def model_version_metadata(entry: ReadyVersion) -> dict:
    return _metadata(entry)


@router.get("/models/{name}/ready", response_model=ModelReadiness, responses=MODEL_ERRORS)
async def model_ready(entry: ReadyModel) -> ModelReadiness:
    return ModelReadiness(name=entry.name, ready=True)


@router.get("/models/{name}/versions/{version}/ready", response_model=ModelReadiness, responses=MODEL_ERRORS)
async def model_version_ready(entry: ReadyVersion) -> ModelReadiness:
    return ModelReadiness(name=entry.name, ready=True)


_TYPE = {"INT64": "TYPE_INT64", "FP32": "TYPE_FP32", "FP16": "TYPE_FP16"}


@router.get("/models/{name}/config", responses=MODEL_ERRORS)
async def model_config(entry: ReadyModel, svc: RegistryDep) -> dict:
    """Triton-style model configuration (perf_analyzer reads it); dims exclude the batch."""
    m, s = entry.manifest, svc.settings
    return {
        "name": entry.name,
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
            "provider": {"string_value": entry.provider},
            "variant": {"string_value": entry.variant},
            "parity": {"string_value": entry.served.status},
            "max_sequence_length": {"string_value": str(m.max_sequence_length)},
        },
    }


@router.get("/models/{name}/stats", responses=_errors(404))
async def model_stats(entry: KnownModel, svc: RegistryDep) -> dict:
    st = await svc.engine.statistics(entry.name) if isinstance(entry, Model) else None
    if st is None:
        return {"model_stats": []}
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


async def infer_raw(svc: Registry, raw: RawRequest) -> RawResponse:
    """Inference in the KServe v2 JSON form, or Triton's binary tensor extension."""
    if raw.version is not None:
        _version(raw.version)
    entry = svc.model(raw.name)
    req = parse_request(raw.body, raw.headers.get(HEADER.lower()))
    limit = svc.settings.max_batch_size
    ids_rows, mask_rows = inputs.check_ids(entry, req.input_ids, req.attention_mask, limit)
    result = await svc.infer(entry, ids_rows, mask_rows, raw.request_id)
    values = {tensors.LOGITS: result.logits, tensors.EMBEDDING: result.embedding}
    head: dict[str, Any] = {"model_name": entry.name, "model_version": VERSION}
    if req.id is not None:
        head["id"] = req.id
    head["parameters"] = outputs.timing(result, raw.start)
    body, headers = encode_response(head, [(name, values[name], binary) for name, binary in req.outputs])
    return RawResponse(body, headers)


def _infer_route(path: str, name: str, description: str) -> InferenceRoute:
    return InferenceRoute(
        "POST",
        router.prefix + path,
        PROTOCOL,
        InferenceRequest,
        InferenceResponse,
        infer_raw,
        name=name,
        description=description,
        errors=INFER_ERRORS,
        tags=router.tags,
        body_doc=infer_openapi(),
    )


ROUTES = (
    _infer_route("/models/{name}/infer", "infer", inspect.getdoc(infer_raw) or ""),
    _infer_route(
        "/models/{name}/versions/{version}/infer",
        "infer_version",
        "As /v2/models/{name}/infer; the only version is 1.",
    ),
)
