"""One object per model the service knows: `Model` serves, `FailedModel` (service.repository)
says why one does not.

A Model holds everything a request for it touches (manifest, tokenizer, session, batcher,
waiting room), none of it optional: a route that has a Model never checks for parts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from service.engine.admission import WaitingRoom
from service.engine.batcher import DynamicBatcher
from service.engine.repository import FailedModel, LoadedModel


@dataclass(frozen=True, eq=False)
class Model(LoadedModel):
    """A loaded model with its batcher (started) and the waiting room in front of it."""

    batcher: DynamicBatcher
    room: WaitingRoom
    state: ClassVar[str] = "ready"

    @classmethod
    def serving(cls, loaded: LoadedModel, batcher: DynamicBatcher, room: WaitingRoom) -> Model:
        parts = {f.name: getattr(loaded, f.name) for f in fields(LoadedModel)}
        return cls(**parts, batcher=batcher, room=room)

    @property
    def provider(self) -> str:
        """The execution provider the session actually runs on."""
        return self.runtime.provider


AnyModel = Model | FailedModel
