"""App factory: `create_app(settings) -> FastAPI`, the HTTP front.

The lifespan starts the engine handle: the engine itself in this process (its models loaded,
batchers started; on shutdown they drain), or the link to the engine process. The front parses,
validates and tokenises; the engine runs the batches.
One ASGI layer (outermost) serves the inference routes from their table (service.http.routes) and
does, per request: body-size limit (413), refusal while draining after SIGTERM (503 +
Retry-After), and the request count/latency metrics labelled by route template and known model
name only. FastAPI behind it answers the control plane.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from starlette.datastructures import URL
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import __version__
from service.api import openapi
from service.api import v1 as api_v1
from service.api import v2 as api_v2
from service.errors import BodyTooLarge, ServiceError, ShuttingDown, retry_after_s
from service.front.registry import EngineHandle, Registry
from service.http import accesslog
from service.http.bodies import RawRequest, RawResponse, field_of
from service.http.protocol import Protocol
from service.http.routes import InferenceRoute, Match, RouteTable
from service.metrics import NO_MODEL, UNKNOWN_MODEL, FrontMetrics, exposition, families
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

APIS = (api_v1, api_v2)


def protocol_of(path: str) -> Protocol:
    """The protocol of a request no route of ours answers (no such route, 405, 413): the API
    whose prefix the path is under; v1's for every other path."""
    for api in APIS:
        prefix = api.router.prefix
        if path == prefix or path.startswith(prefix + "/"):
            return api.PROTOCOL
    return api_v1.PROTOCOL


# Every inference route, one row each (service.http.routes): served by the front layer below, never by
# FastAPI, whose routing, dependency solving and exception middleware cost more per request than the
# rest of a batch-1 request's Python work. The control plane (health, metadata, lists, metrics,
# docs) is FastAPI's.
INFERENCE_ROUTES: tuple[InferenceRoute, ...] = (*api_v1.ROUTES, *api_v2.ROUTES)


class ServiceMiddleware:
    """Outermost ASGI layer: serves the inference routes from the table (draining and admission
    decided from the URL alone, the body limit, the handler, refusals in the row's protocol) and
    passes everything else to FastAPI, with the request metrics and access log for both.

    Admission comes first so that an overloaded server spends nothing on bodies it will refuse.
    """

    def __init__(self, app: ASGIApp, service: Registry, table: RouteTable) -> None:
        self.app = app
        self.service = service
        self.table = table
        self.json_log = service.settings.access_log_json
        if self.json_log:
            accesslog.enable_json_lines()

    def _labels(self, scope: Scope, match: Match | None) -> tuple[str, str]:
        route = scope.get("route")
        template = getattr(route, "path", None)
        if template is None:
            if match is None:
                return "_unmatched", UNKNOWN_MODEL
            template, name = match.row.path, match.name
        else:
            name = (scope.get("path_params") or {}).get("name")
        return template, NO_MODEL if name is None else self.service.model_label(name)

    def _refused(self, row: InferenceRoute, name: str | None, exc: ServiceError, **kw: Any) -> RawResponse:
        """A refusal in the row's protocol; a rejection (service.errors.Rejection: the front's own
        or one the engine answered) is counted here, the one place h2h_rejected grows."""
        if exc.rejection is not None:
            self.service.metrics.rejected(
                NO_MODEL if not name else self.service.model_label(name), exc.rejection
            )
        return row.protocol.error(exc, self.service.settings.reject_status, **kw)

    async def _refusal(self, match: Match) -> RawResponse | None:
        """The answer to an inference request refused from its URL alone (draining, full queue), or None."""
        svc, name = self.service, match.name
        if svc.draining:
            closing = ShuttingDown(retry_after_s(svc.settings.retry_after_s))
            return self._refused(match.row, name, closing, headers={"connection": "close"})
        refusal = None if name is None else await svc.admission(name)
        return None if refusal is None else self._refused(match.row, name, refusal)

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

    async def _answer(self, row: InferenceRoute, req: RawRequest) -> RawResponse:
        """The row's handler's answer, or its refusal in the row's protocol: for every inference
        route, the one place a refusal or a bug becomes HTTP."""
        try:
            return await row.handler(self.service, req)
        except ServiceError as exc:
            return self._refused(row, req.name, exc, request_id=req.request_id)
        except Exception:
            log.exception("unhandled error on %s (request %s)", row.path, req.request_id)
            return row.protocol.internal(req.request_id)

    async def _misrouted(self, scope: Scope, receive: Receive, send: Send, match: Match) -> None:
        """A row's path under another method (405 + Allow) or with a trailing slash (307 to the
        path without it), as Starlette answers for its own routes."""
        if match.slash:
            url = URL(scope={**scope, "path": scope["path"].rstrip("/")})
            await RedirectResponse(str(url))(scope, receive, send)
            return
        answer = match.row.protocol.message(405, "Method Not Allowed")
        await RawResponse(answer.body, {**answer.headers, "allow": match.row.method}, 405).send(send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, match: Match | None) -> bool:
        """Answer the request: refused, served from the table, or by FastAPI; False when the
        client went away before sending its body."""
        if match is not None and (match.wrong_method or match.slash):
            await self._misrouted(scope, receive, send, match)
            return True
        refusal = None if match is None else await self._refusal(match)
        if refusal is not None:
            await refusal.send(send)
            return True
        body = await self._read_body(scope, receive)
        if isinstance(body, int):
            if body == 499:
                return False
            protocol = match.row.protocol if match is not None else protocol_of(scope.get("path", ""))
            settings = self.service.settings
            too_large = BodyTooLarge(settings.max_body_bytes)
            await protocol.error(too_large, settings.reject_status, {"connection": "close"}).send(send)
            return True
        if match is None:
            await self.app(scope, _replay(body, receive), send)
            return True
        req = RawRequest.from_scope(scope, body, match.name or "", match.version)
        await (await self._answer(match.row, req)).send(send)
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        scope["h2h.start"] = t0
        rid = scope["h2h.request_id"] = accesslog.request_id(scope)
        match = self.table.match(scope["method"], scope["path"])
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (accesslog.HEADER, rid)]
            await send(message)

        try:
            if not await self._dispatch(scope, receive, send_wrapper, match):
                status = 499
        finally:
            route, model = self._labels(scope, match)
            seconds = time.perf_counter() - t0
            self.service.metrics.observe_request(model, route, status, seconds)
            if self.json_log:
                accesslog.record(scope["method"], route, model, status, seconds, rid)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the app behind: the body already read, then whatever the client sends next."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


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


async def _validation(request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's own parameter validation (no route takes a parsed body or query now)."""
    first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
    field = field_of(first.get("loc", ("body",)))
    protocol = protocol_of(request.url.path)
    return protocol.message(422, f"{field}: {first.get('msg', 'invalid')}", field).to_response()


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    field = "body" if exc.status_code == 400 else None
    response = protocol_of(request.url.path).message(exc.status_code, str(exc.detail), field)
    return Response(response.body, exc.status_code, {**(exc.headers or {}), **response.headers})


async def _refused(request: Request, exc: Exception) -> Response:
    """A control-plane route's refusal (unknown model, not ready) in its API's protocol."""
    assert isinstance(exc, ServiceError)
    rid = (request.scope.get("h2h.request_id") or b"-").decode()
    reject = request.app.state.settings.reject_status
    return protocol_of(request.url.path).error(exc, reject, request_id=rid).to_response()


async def _internal(request: Request, exc: Exception) -> Response:
    rid = (request.scope.get("h2h.request_id") or b"-").decode()
    log.exception("unhandled error on %s (request %s)", request.url.path, rid)
    return protocol_of(request.url.path).internal(rid).to_response()


# what the control plane raises: the service's refusals, and what FastAPI and Starlette decide (no
# such route, 405, parameter validation, bugs)
ERROR_HANDLERS = (
    (ServiceError, _refused),
    (RequestValidationError, _validation),
    (StarletteHTTPException, _http),
    (Exception, _internal),
)


def create_app(
    settings: ServiceSettings | None = None,
    *,
    gpu_metrics: bool = True,
    routes: Sequence[InferenceRoute] = INFERENCE_ROUTES,
    engine: EngineHandle | None = None,
    metrics: FrontMetrics | None = None,
    front_series: Callable[[], list[Metric]] | None = None,
) -> ServiceApp:
    """The app: FastAPI's control plane behind the front layer that serves `routes`.

    `engine`: the engine's handle (default: an engine in this process); `metrics`: where this
    front counts; `front_series`: what /metrics shows of the fronts (default: this front's
    series; with several fronts, all of theirs from the multiprocess files).
    """
    settings = settings or ServiceSettings()
    table = RouteTable(routes)
    if engine is None:
        # the engine in this process: only now, so that a front process never loads ONNX Runtime
        from service.engine.inproc import InprocClient

        engine = InprocClient(settings, gpu_metrics=gpu_metrics)
    service = Registry(settings, engine, metrics)
    fronts = front_series or (lambda: families(service.metrics.registry))

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
    app.state.registry = service
    app.state.settings = settings
    app.include_router(api_v1.router)
    app.include_router(api_v2.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        engine_series = await service.engine.metric_families() if service.engine.ready else []
        return Response(exposition(fronts(), engine_series), media_type=CONTENT_TYPE_LATEST)

    for exc_class, handler in ERROR_HANDLERS:
        app.add_exception_handler(exc_class, handler)
    openapi.install(app, service, table)
    app.front = ServiceMiddleware(partial(FastAPI.__call__, app), service, table)
    return app
