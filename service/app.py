"""App factory: `create_app(settings) -> FastAPI`.

The lifespan loads every model and starts its batcher; on shutdown the batchers drain.
One ASGI middleware (outermost) does, per request: body-size limit (413), refusal while
draining after SIGTERM (503 + Retry-After), and the request count/latency metrics labelled
by route template and known model name only.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import __version__, accesslog, api_v1, api_v2, openapi
from service.bodies import RawRequest, RawResponse, field_of
from service.core import ApiError, Service
from service.metrics import NO_MODEL, UNKNOWN_MODEL
from service.settings import ServiceSettings

log = logging.getLogger("service")

# routes that do inference work, with the template their metrics are labelled with: refused
# with 503 once draining starts, and with 429 before their body is read when the queue is full
_WORK_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/v1/models/(?P<name>[^/]+)/predict$"), "/v1/models/{name}/predict"),
    (re.compile(r"^/v2/models/(?P<name>[^/]+)/infer$"), "/v2/models/{name}/infer"),
    (re.compile(r"^/v2/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/infer$"), "/v2/models/{name}/versions/{version}/infer"),
    (re.compile(r"^/v1/compare$"), "/v1/compare"),
)  # fmt: skip


def _is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def error_body(path: str, message: str, field: str | None) -> dict[str, Any]:
    return {"error": message} if _is_v2(path) else {"error": message, "field": field}


# the hot routes, served by the middleware itself: FastAPI's routing, dependency solving and
# exception middleware cost more per request than the rest of a batch-1 request's Python work
_HOT: dict[str, Callable[[Service, RawRequest], Awaitable[RawResponse]]] = {
    "/v1/models/{name}/predict": api_v1.predict_raw,
    "/v2/models/{name}/infer": api_v2.infer_raw,
    "/v2/models/{name}/versions/{version}/infer": api_v2.infer_raw,
}


class WorkRoute(NamedTuple):
    template: str
    name: str | None
    version: str | None


def _work_route(scope: Scope) -> WorkRoute | None:
    """The inference POST a request is for, from its URL alone, else None."""
    if scope["method"] != "POST":
        return None
    path = scope["path"]
    for pattern, template in _WORK_ROUTES:
        m = pattern.match(path)
        if m is not None:
            groups = m.groupdict()
            return WorkRoute(template, groups.get("name"), groups.get("version"))
    return None


class ServiceMiddleware:
    """Outermost ASGI layer: refusals decided from the URL alone, body limit, request metrics.

    Admission comes first so that an overloaded server spends nothing on bodies it will
    refuse; routing is Starlette's, read back from the scope for the metric labels.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        self.json_log = service.settings.access_log_json
        if self.json_log:
            accesslog.enable_json_lines()

    def _labels(self, scope: Scope, work: WorkRoute | None) -> tuple[str, str]:
        route = scope.get("route")
        template = getattr(route, "path", None)
        if template is None:
            if work is None:
                return "_unmatched", UNKNOWN_MODEL
            template, name = work.template, work.name
        else:
            name = (scope.get("path_params") or {}).get("name")
        return template, NO_MODEL if name is None else self.service.model_label(name)

    async def _reply(self, send: Send, status: int, body: dict, headers: dict[str, str]) -> None:
        await RawResponse.json(body, status, headers).send(send)

    async def _refusal(self, work: WorkRoute | None) -> ApiError | None:
        svc = self.service
        if work is None:
            return None
        name = work.name
        if svc.draining:
            model = NO_MODEL if name is None else svc.model_label(name)
            svc.metrics.rejected(model, "shutting_down")
            headers = {**svc.retry_headers(), "connection": "close"}
            return ApiError(503, "server is shutting down", None, headers)
        return None if name is None else await svc.admission(name)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | int:
        """The whole body, or the status to answer: 413 above the limit, 499 on disconnect."""
        limit = self.service.settings.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return 413
        chunks: list[bytes] = []
        size = 0
        more = scope["method"] in {"POST", "PUT", "PATCH"}
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 499  # client went away before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return 413
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _serve_hot(
        self, handler: Callable[[Service, RawRequest], Awaitable[RawResponse]], req: RawRequest, path: str,
        send: Send,
    ) -> None:  # fmt: skip
        """A hot route's answer, errors mapped as the app's exception handlers map them."""
        try:
            response = await handler(self.service, req)
        except ApiError as exc:
            response = RawResponse.json(error_body(path, exc.message, exc.field), exc.status, exc.headers)
        except Exception:
            log.exception("unhandled error on %s (request %s)", path, req.request_id)
            response = RawResponse.json(error_body(path, "internal server error", None), 500)
        await response.send(send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        scope["h2h.start"] = t0
        rid = scope["h2h.request_id"] = accesslog.request_id(scope)
        path = scope.get("path", "")
        work = _work_route(scope)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (accesslog.HEADER, rid)]
            await send(message)

        try:
            refusal = await self._refusal(work)
            if refusal is not None:
                body = error_body(path, refusal.message, refusal.field)
                await self._reply(send_wrapper, refusal.status, body, refusal.headers)
                return
            body = await self._read_body(scope, receive)
            if isinstance(body, int) and body == 499:
                status = 499
                return
            if isinstance(body, int):
                msg = f"request body is larger than {self.service.settings.max_body_bytes} bytes"
                await self._reply(send_wrapper, 413, error_body(path, msg, "body"), {"connection": "close"})
                return
            hot = _HOT.get(work.template) if work is not None else None
            if hot is not None and work is not None and work.name is not None:
                req = RawRequest.from_scope(scope, body, work.name, work.version)
                await self._serve_hot(hot, req, path, send_wrapper)
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapper)
        finally:
            route, model = self._labels(scope, work)
            seconds = time.perf_counter() - t0
            self.service.metrics.observe_request(model, route, status, seconds)
            if self.json_log:
                accesslog.record(scope["method"], route, model, status, seconds, rid)


class ServiceApp(FastAPI):
    """FastAPI with `ServiceMiddleware` in front of its whole middleware stack.

    `add_middleware` would put it inside Starlette's error and FastAPI's telemetry and body-limit
    layers, which every hot request would then cross for nothing: the middleware answers hot
    routes itself and maps their errors as the exception handlers do.
    """

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front(scope, receive, send)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    body = error_body(request.url.path, exc.message, exc.field)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own parameter validation (no route takes a parsed body or query now)."""
    first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
    field = field_of(first.get("loc", ("body",)))
    body = error_body(request.url.path, f"{field}: {first.get('msg', 'invalid')}", field)
    return JSONResponse(body, status_code=422)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    field = "body" if exc.status_code == 400 else None
    body = error_body(request.url.path, str(exc.detail), field)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    rid = (request.scope.get("h2h.request_id") or b"-").decode()
    log.exception("unhandled error on %s (request %s)", request.url.path, rid)
    return JSONResponse(error_body(request.url.path, "internal server error", None), status_code=500)


ERROR_HANDLERS = (
    (ApiError, _api_error),
    (RequestValidationError, _validation),
    (StarletteHTTPException, _http),
    (Exception, _internal),
)


def create_app(settings: ServiceSettings | None = None, *, gpu_metrics: bool = True) -> ServiceApp:
    settings = settings or ServiceSettings()
    service = Service(settings, gpu_metrics=gpu_metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = ServiceApp(
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

    for exc_class, handler in ERROR_HANDLERS:
        app.add_exception_handler(exc_class, handler)
    openapi.install(app, service)
    app.front = ServiceMiddleware(partial(FastAPI.__call__, app), service)
    return app
