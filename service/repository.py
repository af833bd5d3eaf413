"""Discover and load the model repository.

Only direct children of the repository whose names match `MODEL_NAME_RE` are models;
hidden folders (export's staging `.name.partial`) and anything else are skipped. Requests
look models up in the dict built here, so user input never becomes a path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from contract import reference
from contract.manifest import MODEL_NAME_RE, Manifest, load_manifest, verify_variant
from contract.tokenizer import Tokenizer
from service import variants
from service.runtime import OrtModel, choose_providers
from service.settings import ServiceSettings

log = logging.getLogger("service.repository")


@dataclass
class ModelEntry:
    name: str
    path: Path
    state: str = "loading"  # ready | failed
    error: str | None = None
    manifest: Manifest | None = None
    tokenizer: Tokenizer | None = None
    runtime: OrtModel | None = None
    variant: str | None = None
    served: variants.Served | None = None  # the variant's parity standing on its provider
    load_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def provider(self) -> str | None:
        return self.runtime.provider if self.runtime else None


def discover(root: Path, only: list[str] | None = None) -> list[ModelEntry]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {root} is not a folder")
    entries = []
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        if not MODEL_NAME_RE.fullmatch(child.name):
            log.warning("skipping %s: not a valid model name", child.name)
            continue
        if only is not None and child.name not in only:
            continue
        entries.append(ModelEntry(name=child.name, path=child))
    for name in only or []:
        if name not in {e.name for e in entries}:
            entries.append(ModelEntry(name=name, path=root / name, state="failed", error="no such folder"))
    return entries


def _plain_name(value: str, what: str) -> str:
    if Path(value).name != value or value in {"", ".", ".."}:
        raise ValueError(f"manifest {what} {value!r} must be a file name inside the model folder")
    return value


def _best_variant(
    path: Path, m: Manifest, settings: ServiceSettings, sessions: int
) -> tuple[OrtModel, variants.Served]:
    """The best variant proven on the provider (service.variants), its file name and sha256
    checked before a session opens it."""

    def open_variant(name: str) -> OrtModel:
        _plain_name(m.variants[name].file, "variant file")
        return OrtModel(verify_variant(path, m, name), settings, sessions, max_length=m.max_sequence_length)

    def batches() -> list[reference.Batch]:
        return reference.load(path / _plain_name(m.reference or "", "reference"))

    provider = choose_providers(settings)[0][0]
    return variants.select(m, provider, settings.variant, settings.allow_unproven, open_variant, batches)


def load(entry: ModelEntry, settings: ServiceSettings, sessions: int = 1) -> ModelEntry:
    """Fill `entry` in place: ready with a session, or failed with the reason. `sessions`: how
    many models share the machine's cores (ORT thread counts)."""
    t0 = time.perf_counter()
    try:
        m = load_manifest(entry.path)
        if m.name != entry.name:
            raise ValueError(f"manifest name {m.name!r} differs from the folder name")
        _plain_name(m.tokenizer, "tokenizer")
        tok = Tokenizer.load(entry.path / m.tokenizer)
        if tok.vocab_size != m.vocab_size:
            raise ValueError(f"tokenizer has {tok.vocab_size} words, manifest says {m.vocab_size}")
        runtime, entry.served = _best_variant(entry.path, m, settings, sessions)
        entry.manifest, entry.tokenizer, entry.runtime, entry.variant = m, tok, runtime, entry.served.variant
        if settings.warmup:
            _warm_up(entry.name, runtime)
        entry.state, entry.error = "ready", None
    except Exception as exc:  # reported, never fatal: the other models still serve
        entry.state, entry.error = "failed", f"{type(exc).__name__}: {exc}"
        entry.runtime = entry.served = None
        log.error("model %s failed to load: %s", entry.name, entry.error)
    entry.load_seconds = time.perf_counter() - t0
    return entry


def _warm_up(name: str, runtime: OrtModel) -> None:
    """Warm the model up before it says ready (on CUDA: capture all its graphs), logging once
    what the graphs took."""
    graphs = runtime.warm_up()
    if graphs is not None:
        growth = graphs.capture_growth_bytes
        log.info(
            "%s: %d CUDA graphs captured in %.2f s, %.1f MiB of bound device buffers, device memory %s",
            name,
            graphs.graphs,
            graphs.capture_s,
            graphs.bound_bytes / 2**20,
            "growth not visible to NVML" if growth is None else f"+{growth / 2**20:.1f} MiB",
        )


def share_tokenizers(entries: Iterable[ModelEntry]) -> None:
    """Give models with equal tokenizers one object, so that /v1/compare tokenises a text once
    for all of them (models exported from one training split share their vocabulary)."""
    seen: list[Tokenizer] = []
    for entry in entries:
        tok = entry.tokenizer
        if tok is None:
            continue
        same = next((t for t in seen if t.to_dict() == tok.to_dict()), None)
        if same is None:
            seen.append(tok)
        else:
            entry.tokenizer = same
