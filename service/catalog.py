"""What the front knows of each model, the same whether the engine runs in this process or in its
own: a `Model` that serves (manifest, tokenizer, the variant served and where) or a `FailedModel`
(why not). The engine describes its models as `ModelFacts` (`facts`, service.messages), which
cross the process boundary; the front reads the manifest and tokenizer from the model folder itself, so
validation and tokenisation never need the engine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from contract.manifest import Manifest, load_manifest
from contract.tokenizer import Tokenizer
from service.messages import ModelFacts
from service.runtime.variants import Served


@dataclass(frozen=True)
class FailedModel:
    """A model that does not serve: it failed to load, or its batcher stopped (`error` says why)."""

    name: str
    error: str
    load_seconds: float = 0.0
    state: ClassVar[str] = "failed"


@dataclass(frozen=True, eq=False)
class Model:
    """A model that serves, as the front sees it: enough to validate, tokenise and describe."""

    name: str
    manifest: Manifest
    tokenizer: Tokenizer
    served: Served  # the variant served and its parity standing on its provider
    provider: str  # the provider the session actually runs on
    providers: list[str]
    cuda_graphs: dict[str, Any] | None  # the captured graphs' figures (CUDA only)
    load_seconds: float
    state: ClassVar[str] = "ready"

    @property
    def variant(self) -> str:
        return self.served.variant


AnyModel = Model | FailedModel


def facts(m: AnyModel) -> ModelFacts:
    """What the engine says of a model: for one that serves, what is not in its folder."""
    if not isinstance(m, Model):
        return ModelFacts(m.name, m.state, m.load_seconds, error=m.error)
    return ModelFacts(
        m.name,
        m.state,
        m.load_seconds,
        served=asdict(m.served),
        provider=m.provider,
        providers=list(m.providers),
        cuda_graphs=m.cuda_graphs,
    )


def from_facts(d: ModelFacts, repository: Path, known: dict[str, AnyModel] | None = None) -> AnyModel:
    """The front's entry for a model the engine described; a serving model's manifest and
    tokenizer come from its folder (or from `known`, the entry of an earlier description)."""
    if d.state != Model.state or d.served is None or d.provider is None:
        return FailedModel(d.name, d.error or "not serving", d.load_seconds)
    before = (known or {}).get(d.name)
    if isinstance(before, Model):
        manifest, tokenizer = before.manifest, before.tokenizer
    else:
        folder = Path(repository) / d.name
        manifest = load_manifest(folder)
        tokenizer = Tokenizer.load(folder / manifest.tokenizer)
    return Model(
        d.name,
        manifest,
        tokenizer,
        Served(**d.served),
        d.provider,
        d.providers,
        d.cuda_graphs,
        d.load_seconds,
    )


def share_tokenizers(models: list[AnyModel]) -> list[AnyModel]:
    """The models, those with equal tokenizers given one object, so that /v1/compare tokenises a
    text once for all of them (models exported from one training split share their vocabulary)."""
    seen: list[Tokenizer] = []
    out: list[AnyModel] = []
    for model in models:
        if not isinstance(model, Model):
            out.append(model)
            continue
        tok = model.tokenizer
        same = next((t for t in seen if t.to_dict() == tok.to_dict()), None)
        if same is None:
            seen.append(tok)
            out.append(model)
        else:
            out.append(Model(**{**model.__dict__, "tokenizer": same}))
    return out
