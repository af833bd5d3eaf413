"""How one API says the service's refusals: its status for each kind, and its error body.

`api_v1.PROTOCOL` and `api_v2.PROTOCOL` are the two. `Protocol.error` is the one place a refusal
becomes a status and a body: the front layer (service.app) calls it for the inference routes and
the FastAPI exception handlers for the control plane, so neither the core nor a route picks a
status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from service import errors
from service.errors import Overloaded, ServiceError
from service.http.bodies import RawResponse

# the statuses both APIs give alike; they part on bad input (v1 422, v2 400) and v1's MalformedBody
SHARED_STATUSES: dict[type[ServiceError], int] = {
    errors.BodyTooLarge: 413,
    errors.UnknownModel: 404,
    errors.UnknownVersion: 404,
    errors.ModelNotReady: 503,
    errors.ShuttingDown: 503,
    errors.Timeout: 504,
    errors.InternalError: 500,
}


@dataclass(frozen=True)
class Protocol:
    statuses: Mapping[type[ServiceError], int]  # looked up along the exception's MRO
    body: Callable[[ServiceError], dict[str, Any]]  # the JSON error body

    def status(self, exc: ServiceError, reject_status: int) -> int:
        if isinstance(exc, Overloaded):
            return reject_status
        for cls in type(exc).__mro__:
            status = self.statuses.get(cls)
            if status is not None:
                return status
        return 500

    def error(
        self,
        exc: ServiceError,
        reject_status: int,
        headers: Mapping[str, str] | None = None,
        request_id: str = "-",
    ) -> RawResponse:
        """`exc` as this protocol's answer; Retry-After when the refusal says when to come back,
        and the request id in a 500's message (the log line with the cause carries it too)."""
        hdrs = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        hdrs.update(headers or {})
        status = self.status(exc, reject_status)
        if status == 500:
            exc = ServiceError(f"{exc.message} (request id {request_id})")
        return RawResponse.json(self.body(exc), status, hdrs)

    def internal(self, request_id: str) -> RawResponse:
        """The answer to a request the server failed at by a bug (logged by the caller)."""
        return self.error(errors.InternalError("internal server error"), 500, request_id=request_id)

    def message(self, status: int, message: str, field: str | None = None) -> RawResponse:
        """An error the framework decided (no such route, 405, 413, 500), in this protocol's body."""
        return RawResponse.json(self.body(ServiceError(message, field)), status)
