"""The engine's answer to each request message (service.messages), whoever carries it: the engine
server for fronts in other processes, the in-process client (service.engine.inproc) for
`--single-process`. Both shapes therefore take one path from the message to the engine and back.
"""

from __future__ import annotations

import logging
import os

from service import catalog
from service.engine.core import Engine
from service.errors import InternalError, ServiceError
from service.messages import (
    Admit,
    Admitted,
    Describe,
    Description,
    Infer,
    Inferred,
    MetricsQuery,
    MetricsReply,
    Refused,
    Reply,
    Request,
    Statistics,
    StatsQuery,
    families_out,
    refusal_of,
)
from service.metrics import families

log = logging.getLogger(__name__)


class Dispatcher:
    """Request message -> the engine -> reply message; every refusal a `Refused`, never raised."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def answer(self, msg: Request) -> Reply:
        """The reply to `msg`: its answer, its refusal, or (a bug) an internal error, logged here."""
        try:
            reply = await self._answer(msg)
        except ServiceError as exc:
            reply = Refused(refusal=refusal_of(exc))
        except Exception:
            log.exception("engine: %s failed", type(msg).__name__)
            reply = Refused(refusal=refusal_of(InternalError("the engine failed at this request")))
        reply.generation = self.engine.generation
        return reply

    async def _answer(self, msg: Request) -> Reply:
        engine = self.engine
        match msg:
            case Infer():
                result = await engine.infer(msg.model, msg.ids_rows(), msg.mask_rows(), msg.request_id)
                return Inferred(result=result, has_room=engine.has_room(msg.model))
            case Admit():
                refusal = await engine.admit(msg.model)
                has_room = engine.has_room(msg.model)
                return Admitted(has_room=has_room, refusal=None if refusal is None else refusal_of(refusal))
            case Describe():
                return Description(pid=os.getpid(), models=[catalog.facts(m) for m in engine.views()])
            case StatsQuery():
                return Statistics(stats=engine.statistics(msg.model))
            case MetricsQuery():
                return MetricsReply(families=families_out(families(engine.metrics.registry)))
        raise InternalError(f"no such request: {type(msg).__name__}")
