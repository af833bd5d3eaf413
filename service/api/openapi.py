"""The OpenAPI document, made to say what the server enforces.

FastAPI's generated document misses what this server does differently: the inference routes are
not FastAPI's (their operations are generated here from their table, service.http.routes, and their
request models registered), errors have our bodies rather than FastAPI's
`HTTPValidationError`, and some limits come from settings and the loaded models (rows per request,
tokens per row, vocabulary size), so they are filled in once the models are loaded.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute

from contract.tensors import ATTENTION_MASK, INPUT_IDS
from service.api.schemas import ErrorResponse, V2ErrorResponse
from service.front.registry import Registry
from service.http.routes import RouteTable

REF = "#/components/schemas/{model}"


def _components(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return dict(top.get("$defs", {}))


def _limits(service: Registry) -> tuple[int, int | None, int | None]:
    """(rows per request, tokens per row, largest token id) valid for every ready model."""
    manifests = [m.manifest for m in service.serving()]
    if not manifests:
        return service.settings.max_batch_size, None, None
    tokens = min(m.max_sequence_length for m in manifests)
    return service.settings.max_batch_size, tokens, min(m.vocab_size for m in manifests) - 1


def _fill_limits(schemas: dict[str, Any], service: Registry) -> None:
    rows, tokens, top_id = _limits(service)
    predict, compare = schemas["PredictRequest"]["properties"], schemas["CompareRequest"]["properties"]
    for prop in (predict["texts"], predict[INPUT_IDS], predict[ATTENTION_MASK], compare["texts"]):
        prop["maxItems"] = rows
    if tokens is not None:
        predict[INPUT_IDS]["items"]["maxItems"] = tokens
        predict[ATTENTION_MASK]["items"]["maxItems"] = tokens
    if top_id is not None:
        predict[INPUT_IDS]["items"]["items"]["maximum"] = top_id


def _error_bodies(doc: dict[str, Any]) -> None:
    """FastAPI documents its own 422 body on every route with parameters; ours differ."""
    for path, item in doc.get("paths", {}).items():
        model = V2ErrorResponse if path.startswith("/v2") else ErrorResponse
        for op in item.values():
            resp = op.get("responses", {}).get("422")
            if resp is None:
                continue
            if path.startswith("/v2") or op.get("requestBody") is None and "{name}" in path:
                del op["responses"]["422"]  # a path parameter of type string cannot fail validation
                continue
            resp["content"] = {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}
    for name in ("HTTPValidationError", "ValidationError"):
        doc.get("components", {}).get("schemas", {}).pop(name, None)


def _routes(app: FastAPI, table: RouteTable) -> list[BaseRoute]:
    """The app's routes with the table's operations, each after its API's router (the order of
    the document's paths: an API's inference routes after its control plane)."""
    rows: dict[str, list[BaseRoute]] = {}
    for row in table.rows:
        rows.setdefault("/" + row.path.split("/")[1], []).append(row.doc_route())
    routes: list[BaseRoute] = []
    for route in app.routes:
        routes.append(route)
        router = getattr(route, "original_router", None)  # an included APIRouter
        routes += rows.pop(getattr(router, "prefix", None) or getattr(route, "path", ""), [])
    return [*routes, *(r for group in rows.values() for r in group)]


def build(app: FastAPI, service: Registry, table: RouteTable) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=_routes(app, table),
        openapi_version=app.openapi_version,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(_components(tuple(dict.fromkeys(row.request for row in table.rows))))
    schemas.update(_components((ErrorResponse, V2ErrorResponse)))
    _fill_limits(schemas, service)
    _error_bodies(doc)
    return doc


def install(app: FastAPI, service: Registry, table: RouteTable) -> None:
    """Serve `build()`'s document at /openapi.json, cached once the models are loaded."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build(app, service, table)
        if service.started:
            app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
