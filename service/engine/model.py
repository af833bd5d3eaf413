"""The engine's object per serving model: `EngineModel` holds the repository's entry for it
(`LoadedModel`: manifest, tokenizer, session, the variant served), its batcher and the waiting
room in front of it, none optional; a model that does not serve is a `service.catalog.FailedModel`
(name, error)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from service import catalog
from service.engine.admission import WaitingRoom
from service.engine.batcher import DynamicBatcher
from service.engine.repository import LoadedModel


@dataclass(frozen=True, eq=False)
class EngineModel:
    """A loaded model with its batcher (started) and the waiting room in front of it."""

    loaded: LoadedModel
    batcher: DynamicBatcher
    room: WaitingRoom
    state: ClassVar[str] = "ready"

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def load_seconds(self) -> float:
        return self.loaded.load_seconds

    def view(self) -> catalog.Model:
        """What the front knows of this model."""
        m = self.loaded
        return catalog.Model(
            m.name,
            m.manifest,
            m.tokenizer,
            m.served,
            m.runtime.provider,
            list(m.runtime.providers),
            m.runtime.graph_figures(),
            m.load_seconds,
        )


AnyEngineModel = EngineModel | catalog.FailedModel
