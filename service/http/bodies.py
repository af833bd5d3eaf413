"""JSON request bodies in, JSON responses out, without FastAPI's per-request body machinery.

The inference routes take the raw body and validate it here with pydantic-core's JSON parser
(`model_validate_json`, one pass in Rust), and answer with orjson bytes instead of FastAPI's
response-model validation and `jsonable_encoder`: both showed at the top of the profile of a
batch-1 request. The request and response models still document the routes (OpenAPI), and
every error keeps the status, field and message it had when FastAPI parsed the body.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.types import Scope, Send

from service.errors import InvalidInput, MalformedBody

M = TypeVar("M", bound=BaseModel)

# Deeper JSON is refused before the stdlib parser sees it: that parser recurses once per level and
# raises RecursionError (a 500) near the interpreter's limit, and no request of ours nests past 5.
MAX_JSON_DEPTH = 64
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_STEP = np.zeros(256, dtype=np.int32)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `raw` opens more than `limit` arrays/objects inside one another (brackets within
    strings do not count). Bodies with at most `limit` brackets in all are not scanned."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    steps = _STEP[np.frombuffer(_STRING.sub(b"", raw), dtype=np.uint8)]
    return bool(steps.size) and int(np.cumsum(steps).max()) > limit


def field_of(loc: tuple | list) -> str:
    """Dotted path of a pydantic error location (`texts.0`), `body` for the body itself."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "path", "query"}:
        parts = parts[1:] if len(parts) > 1 else parts
    return ".".join(parts) or "body"


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule (no content type, or a `json` / `+json` subtype, is read as JSON)."""
    if not content_type:
        return True
    subtype = content_type.split(";", 1)[0].strip().lower().partition("/")[2]
    return subtype == "json" or subtype.endswith("+json")


def _invalid(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    field = field_of(first.get("loc", ()))
    return InvalidInput(f"{field}: {first.get('msg', 'invalid')}", field)


def _slow_path(model: type[M], raw: bytes) -> M:
    """The stdlib parser, for bodies the fast parser refuses: it accepts lone surrogates (which
    validation then names by field) and gives the error messages clients already see."""
    if too_deep(raw):
        raise MalformedBody(f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels", "body")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise MalformedBody("body is not valid UTF-8 JSON", "body") from None
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"malformed JSON: {exc}", "body") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None


def parse_body(model: type[M], raw: bytes, content_type: str | None) -> M:
    """Validate a JSON body against `model`; MalformedBody or InvalidInput (naming the field)
    otherwise."""
    if not _is_json(content_type):
        got = (content_type or "")[:40] or "none"
        msg = f"body: expected a JSON object with content-type: application/json (got {got!r})"
        raise InvalidInput(msg, "body")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if exc.errors()[0].get("type") == "json_invalid":
            return _slow_path(model, raw)
        raise _invalid(exc) from None


@dataclass(frozen=True)
class RawRequest:
    """What an inference route's handler needs of a request, built from the ASGI scope."""

    name: str
    body: bytes
    headers: dict[str, str]  # lower-case names
    start: float  # perf_counter when the server first saw the request
    version: str | None = None
    request_id: str = "-"

    @classmethod
    def from_scope(cls, scope: Scope, body: bytes, name: str, version: str | None) -> RawRequest:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}
        rid = (scope.get("h2h.request_id") or b"-").decode("ascii")
        return cls(name, body, headers, scope.get("h2h.start") or time.perf_counter(), version, rid)

    def parse(self, model: type[M]) -> M:
        return parse_body(model, self.body, self.headers.get("content-type"))


@dataclass(frozen=True)
class RawResponse:
    """A finished answer: body bytes and headers (content-type included)."""

    body: bytes
    headers: dict[str, str]
    status: int = 200

    @classmethod
    def json(cls, content: Any, status: int = 200, headers: dict[str, str] | None = None) -> RawResponse:
        """orjson bytes (numpy scalars and arrays included)."""
        body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
        return cls(body, {"content-type": "application/json", **(headers or {})}, status)

    def to_response(self) -> Response:
        return Response(self.body, status_code=self.status, headers=self.headers)

    async def send(self, send: Send) -> None:
        hdrs = [(b"content-length", str(len(self.body)).encode())]
        hdrs += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": hdrs})
        await send({"type": "http.response.body", "body": self.body})


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting `model` as the JSON request body of a raw-body route (the
    schema itself is registered by service.api.openapi)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}
