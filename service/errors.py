"""What the service refuses, in its own words; each API says it in its protocol.

The front (service.front, service.http.bodies, service.api.v2codec) and the engine raise these, never an HTTP
status: the same refusal is a 422 on v1 and a 400 on v2, a 404 or 503 with a `field` on v1 and
without one on v2. Each API module maps them to its statuses and body (`service.api.v1.PROTOCOL`,
`service.api.v2.PROTOCOL`, see service.http.protocol).
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import ClassVar


class Rejection(StrEnum):
    """Why a work request was turned away for want of capacity or time: the `reason` of
    h2h_rejected, counted once, where the front answers the refusal (service.app)."""

    QUEUE_FULL = "queue_full"
    TIMEOUT = "timeout"
    SHUTTING_DOWN = "shutting_down"
    ENGINE_DOWN = "engine_down"


def retry_after_s(least_s: int, queued_rows: int = 0, rows_per_s: float = 0.0) -> int:
    """The one Retry-After rule: the queue's drain time at its measured rate (whole seconds,
    1..60; 1 when nothing is queued or measured), never below the configured H2H_RETRY_AFTER_S."""
    drain = max(1, min(60, math.ceil(queued_rows / rows_per_s))) if rows_per_s > 0.0 else 1
    return max(least_s, drain)


class ServiceError(Exception):
    """A refusal: what is wrong, the request part it is about (dotted path into the body, `name`
    for the model in the URL, `body` for the whole body) and, for refusals that pass, when to
    come back (seconds). `rejection`: set on the refusals h2h_rejected counts."""

    rejection: ClassVar[Rejection | None] = None

    def __init__(self, message: str, field: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message, self.field, self.retry_after = message, field, retry_after


class InvalidInput(ServiceError):
    """The request breaks a rule of the API or of the model (a value, a shape, a limit)."""


class MalformedBody(InvalidInput):
    """The body cannot be read at all (not JSON, not UTF-8): v1 tells it apart from a broken rule."""


class BodyTooLarge(ServiceError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes", "body")


class UnknownModel(ServiceError):
    def __init__(self, name: str, field: str | None = "name") -> None:
        super().__init__(f"unknown model {name[:80]!r}", field)


class UnknownVersion(ServiceError):
    def __init__(self, version: str, only: str) -> None:
        super().__init__(f"model version {version[:16]!r} does not exist (only {only})")


class ModelNotReady(ServiceError):
    """The model failed to load (the message carries why), or none is ready."""

    @classmethod
    def of(cls, name: str, reason: str | None, field: str | None = "name") -> ModelNotReady:
        return cls(f"model {name} is not ready: {reason}", field)


class EngineDown(ModelNotReady):
    """The engine process is restarting: every model is unready until it is back."""

    rejection = Rejection.ENGINE_DOWN


class Overloaded(ServiceError):
    """The model's queue is full: answered with the server's reject status (H2H_REJECT_STATUS)
    whatever the protocol."""

    rejection = Rejection.QUEUE_FULL

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, None, retry_after)


class ShuttingDown(ServiceError):
    """The server drains after SIGTERM (or a queue stopped): new work is refused."""

    rejection = Rejection.SHUTTING_DOWN

    def __init__(self, retry_after: int, message: str = "server is shutting down") -> None:
        super().__init__(message, None, retry_after)


class Timeout(ServiceError):
    """No answer within the request timeout."""

    rejection = Rejection.TIMEOUT


class InternalError(ServiceError):
    """The server failed at a request it accepted (a batch that failed, a bug): answered 500
    with the request id, the cause logged once where it happened."""
