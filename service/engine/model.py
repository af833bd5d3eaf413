"""The engine's object per serving model: `EngineModel` holds the session, its batcher and the
waiting room in front of it, none optional; a model that does not serve is a
`service.catalog.FailedModel` (name, error)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from service import catalog
from service.engine.admission import WaitingRoom
from service.engine.batcher import DynamicBatcher
from service.engine.repository import LoadedModel


@dataclass(frozen=True, eq=False)
class EngineModel(LoadedModel):
    """A loaded model with its batcher (started) and the waiting room in front of it."""

    batcher: DynamicBatcher
    room: WaitingRoom
    state: ClassVar[str] = "ready"

    @classmethod
    def serving(cls, loaded: LoadedModel, batcher: DynamicBatcher, room: WaitingRoom) -> EngineModel:
        parts = {f.name: getattr(loaded, f.name) for f in fields(LoadedModel)}
        return cls(**parts, batcher=batcher, room=room)

    @property
    def provider(self) -> str:
        """The execution provider the session actually runs on."""
        return self.runtime.provider

    def view(self) -> catalog.Model:
        """What the front knows of this model."""
        return catalog.Model(
            self.name,
            self.manifest,
            self.tokenizer,
            self.served,
            self.provider,
            list(self.runtime.providers),
            self.runtime.graph_figures(),
            self.load_seconds,
        )


AnyEngineModel = EngineModel | catalog.FailedModel
