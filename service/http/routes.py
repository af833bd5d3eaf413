"""The inference routes, as one table: each row says what the server does for one route.

A row names the method, the path, the protocol its refusals are said in, the request and response
models, and the raw handler (bytes in, bytes out). From the table alone the front ASGI layer
(service.app) serves the routes, with admission, the body limit, draining and error mapping done
there once for every row, and service.api.openapi documents them. FastAPI never sees an inference
route: adding one is adding a row.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import compile_path

from service.front.registry import Registry
from service.http.bodies import RawRequest, RawResponse, openapi_body
from service.http.protocol import Protocol

# a route's work from raw bytes to raw bytes, which the front layer calls without FastAPI
RawHandler = Callable[[Registry, RawRequest], Awaitable[RawResponse]]


@dataclass(frozen=True)
class InferenceRoute:
    """One inference route. `name` is its operation's name in the OpenAPI document; `body_doc`
    replaces the request body documented from `request` (e.g. a binary alternative)."""

    method: str
    path: str  # a template: `{name}` is the model, `{version}` its version
    protocol: Protocol
    request: type[BaseModel]
    response: type[BaseModel]
    handler: RawHandler
    name: str
    description: str
    errors: Mapping[int | str, dict[str, Any]]
    tags: Sequence[str]
    body_doc: dict[str, Any] | None = None
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", compile_path(self.path)[0])

    def doc_route(self) -> APIRoute:
        """The route as FastAPI documents one (never added to the app): path parameters, request
        body, response model, the statuses it answers."""

        def operation() -> None: ...

        params = re.findall(r"{(\w+)}", self.path)
        operation.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, annotation=str) for p in params]
        )
        return APIRoute(
            self.path,
            operation,
            methods=[self.method],
            name=self.name,
            description=self.description,
            response_model=self.response,
            responses=dict(self.errors),
            tags=list(self.tags),
            openapi_extra=self.body_doc or openapi_body(self.request),
        )


class Match:
    """What the table says of a request line: the row it is for, or that its path is a row's under
    another method (405) or with a trailing slash (307, Starlette's rule)."""

    __slots__ = ("row", "name", "version", "wrong_method", "slash")

    def __init__(
        self, row: InferenceRoute, groups: dict[str, str], wrong_method: bool = False, slash: bool = False
    ) -> None:
        self.row = row
        self.name = groups.get("name")
        self.version = groups.get("version")
        self.wrong_method = wrong_method
        self.slash = slash


class RouteTable:
    """The rows, looked up by method and path."""

    def __init__(self, rows: Sequence[InferenceRoute]) -> None:
        self.rows = tuple(rows)

    def match(self, method: str, path: str) -> Match | None:
        for row in self.rows:
            m = row.pattern.match(path)
            if m is not None:
                return Match(row, m.groupdict(), wrong_method=method != row.method)
        if path.endswith("/") and path != "/":
            for row in self.rows:
                m = row.pattern.match(path[:-1])
                if m is not None:
                    return Match(row, m.groupdict(), slash=True)
        return None
