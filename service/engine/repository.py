"""Discover and load the model repository.

Only direct children of the repository whose names match `MODEL_NAME_RE` are models;
hidden folders (export's staging `.name.partial`) and anything else are skipped. Requests
look models up by name among those loaded here, so user input never becomes a path.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from contract import reference
from contract.manifest import MODEL_NAME_RE, Manifest, load_manifest, verify_variant
from contract.tokenizer import Tokenizer
from service.catalog import FailedModel
from service.runtime import variants
from service.runtime.session import OrtModel, choose_providers
from service.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model folder read, verified and given its ONNX Runtime session."""

    name: str
    manifest: Manifest
    tokenizer: Tokenizer
    runtime: OrtModel
    served: variants.Served  # the variant served and its parity standing on its provider
    load_seconds: float

    @property
    def variant(self) -> str:
        return self.served.variant


def discover(root: Path, only: list[str] | None = None) -> list[Path | FailedModel]:
    """The model folders under `root` (a model's name is its folder's), and a FailedModel for each
    name in `only` that has none."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {root} is not a folder")
    found: list[Path | FailedModel] = []
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        if not MODEL_NAME_RE.fullmatch(child.name):
            log.warning("skipping %s: not a valid model name", child.name)
            continue
        if only is not None and child.name not in only:
            continue
        found.append(child)
    names = {p.name for p in found if isinstance(p, Path)}
    found += [FailedModel(name, "no such folder") for name in only or [] if name not in names]
    return found


def _plain_name(value: str, what: str) -> str:
    if Path(value).name != value or value in {"", ".", ".."}:
        raise ValueError(f"manifest {what} {value!r} must be a file name inside the model folder")
    return value


def _best_variant(
    path: Path, m: Manifest, settings: ServiceSettings, sessions: int
) -> tuple[OrtModel, variants.Served]:
    """The best variant proven on the provider (service.runtime.variants), its file name and sha256
    checked before a session opens it."""

    def open_variant(name: str) -> OrtModel:
        _plain_name(m.variants[name].file, "variant file")
        return OrtModel(verify_variant(path, m, name), settings, sessions, max_length=m.max_sequence_length)

    def batches() -> list[reference.Batch]:
        return reference.load(path / _plain_name(m.reference or "", "reference"))

    provider = choose_providers(settings)[0][0]
    return variants.select(m, provider, settings.variant, settings.allow_unproven, open_variant, batches)


def load(folder: Path, settings: ServiceSettings, sessions: int = 1) -> LoadedModel | FailedModel:
    """The model in `folder` with its session, or why it failed (logged; never fatal: the other
    models still serve). `sessions`: how many models share the machine's cores (ORT threads)."""
    name = folder.name
    t0 = time.perf_counter()
    try:
        m = load_manifest(folder)
        if m.name != name:
            raise ValueError(f"manifest name {m.name!r} differs from the folder name")
        _plain_name(m.tokenizer, "tokenizer")
        tok = Tokenizer.load(folder / m.tokenizer)
        if tok.vocab_size != m.vocab_size:
            raise ValueError(f"tokenizer has {tok.vocab_size} words, manifest says {m.vocab_size}")
        runtime, served = _best_variant(folder, m, settings, sessions)
        if settings.warmup:
            _warm_up(name, runtime)
    except Exception as exc:  # reported, never fatal: the other models still serve
        error = f"{type(exc).__name__}: {exc}"
        log.error("model %s failed to load: %s", name, error)
        return FailedModel(name, error, time.perf_counter() - t0)
    return LoadedModel(name, m, tok, runtime, served, time.perf_counter() - t0)


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
