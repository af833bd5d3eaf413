"""App factory: `create_app(settings) -> FastAPI`.

The lifespan loads every model and starts its batcher; on shutdown the batchers drain.
One ASGI middleware (outermost) does, per request: body-size limit (413), refusal while
draining after SIGTERM (503 + Retry-After), and the request count/latency metrics labelled
by route template and known model name only.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import __version__, api_v1, api_v2
from service.core import ApiError, Service
from service.metrics import NO_MODEL, UNKNOWN_MODEL
from service.settings import ServiceSettings

log = logging.getLogger("service")

# routes that do inference work: refused with 503 once draining starts
_WORK_ROUTES = re.compile(r"^/v1/(models/[^/]+/predict|compare)$|^/v2/models/[^/]+(/versions/[^/]+)?/infer$")


def _is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def error_body(path: str, message: str, field: str | None) -> dict[str, Any]:
    return {"error": message} if _is_v2(path) else {"error": message, "field": field}


def _loc_field(loc: tuple | list) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "path", "query"}:
        parts = parts[1:] if len(parts) > 1 else parts
    return ".".join(parts) or "body"


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, service: Service, fastapi_app: FastAPI) -> None:
        self.app = app
        self.service = service
        self.fastapi_app = fastapi_app
        self._all_routes: list[BaseRoute] | None = None

    def _routes(self) -> list[BaseRoute]:
        if self._all_routes is None:
            routes = [r for r in self.fastapi_app.router.routes if hasattr(r, "path")]
            self._all_routes = routes + list(api_v1.router.routes) + list(api_v2.router.routes)
        return self._all_routes

    def _route(self, scope: Scope) -> tuple[str, str]:
        for route in self._routes():
            match, child = route.matches(scope)
            if match == Match.FULL:
                name = child.get("path_params", {}).get("name")
                label = NO_MODEL if name is None else self.service.model_label(name)
                return getattr(route, "path", "_unmatched"), label
        return "_unmatched", UNKNOWN_MODEL

    async def _reply(self, send: Send, status: int, body: dict, headers: dict[str, str]) -> None:
        raw = json.dumps(body).encode()
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        hdrs += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": raw})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        scope["h2h.start"] = t0
        svc = self.service
        path = scope.get("path", "")
        route, model = self._route(scope)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if svc.draining and _WORK_ROUTES.match(path):
                svc.metrics.rejected(model, "shutting_down")
                retry = {"retry-after": str(svc.settings.retry_after_s), "connection": "close"}
                await self._reply(send_wrapper, 503, error_body(path, "server is shutting down", None), retry)
                return
            # Buffer the body up to the limit; bigger bodies are refused before any parsing.
            limit = svc.settings.max_body_bytes
            declared = dict(scope.get("headers") or []).get(b"content-length")
            too_big = declared is not None and declared.isdigit() and int(declared) > limit
            chunks: list[bytes] = []
            size = 0
            more = scope["method"] in {"POST", "PUT", "PATCH"} and not too_big
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    status = 499  # client went away before sending its body
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    too_big = True
                    break
                chunks.append(chunk)
                more = message.get("more_body", False)
            if too_big:
                msg = f"request body is larger than {limit} bytes"
                await self._reply(send_wrapper, 413, error_body(path, msg, "body"), {"connection": "close"})
                return
            body = b"".join(chunks)
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapper)
        finally:
            svc.metrics.observe_request(model, route, status, time.perf_counter() - t0)


def create_app(settings: ServiceSettings | None = None, *, gpu_metrics: bool = True) -> FastAPI:
    settings = settings or ServiceSettings()
    service = Service(settings, gpu_metrics=gpu_metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="headtohead",
        version=__version__,
        description="Shallow multi-head vs deep single-head encoders behind one API: simple JSON (v1) "
        "and KServe v2 / Open Inference Protocol with Triton's binary tensor extension.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    app.include_router(api_v1.router)
    app.include_router(api_v2.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(request.url.path, exc.message, exc.field), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            err = (first.get("ctx") or {}).get("error", "")
            return JSONResponse(
                error_body(request.url.path, f"malformed JSON: {err}".rstrip(": "), "body"), status_code=400
            )
        field = _loc_field(first.get("loc", ("body",)))
        msg = str(first.get("msg", "invalid"))
        ctype = request.headers.get("content-type", "")
        if field == "body" and "json" not in ctype and first.get("type") == "model_attributes_type":
            msg = f"expected a JSON object with content-type: application/json (got {ctype[:40] or 'none'!r})"
        return JSONResponse(error_body(request.url.path, f"{field}: {msg}", field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        field = "body" if exc.status_code == 400 else None
        detail = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in detail:
            detail = "body is not valid UTF-8 JSON"
        return JSONResponse(
            error_body(request.url.path, detail, field), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(error_body(request.url.path, "internal server error", None), status_code=500)

    app.add_middleware(ServiceMiddleware, service=service, fastapi_app=app)
    return app
