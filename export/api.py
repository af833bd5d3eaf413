"""Python entry points: a training run (or a random-init preset) -> one model folder.

Everything is built in a temporary sibling folder (contract.atomic.staged_dir) and renamed
into the repository only after every variant passed parity and the manifest validated,
so a reader never sees half a model and a failed export leaves nothing behind.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import onnx
import onnxruntime
import torch

from contract import atomic, reference
from contract.manifest import (
    CUDA_PROVIDER,
    FP16_FILE,
    FP32_FILE,
    GPU_FILE,
    MODEL_NAME_RE,
    OPT_FILE,
    Manifest,
    Parity,
    Variant,
    io_specs,
    sha256_file,
)
from contract.tokenizer import PAD, UNK, Tokenizer
from export import optimize as opt
from export import parity
from export.onnx_export import export_onnx
from export.settings import RANDOM_VOCAB, ExportOptions
from models.checkpoint import Run, load_run, random_run
from models.config import PRESETS, Arch, ModelConfig, flops_per_token, from_preset
from models.data import LEXNAMES
from models.encoder import Encoder, count_parameters

REFERENCE_FILE = "reference.npz"
FP16_FILES, OPTIMIZED_FILES = (FP16_FILE, GPU_FILE), (OPT_FILE, GPU_FILE)
# Where an fp16 variant's CPU parity does not count: CPU runs fp16 graphs through fp32 kernels
# (export.optimize.cpu_emulated_ops), CUDA through fp16 ones, so the service proves it there.
FP16_PENDING = [CUDA_PROVIDER]


class ExportError(ValueError):
    """Bad input to an export (name, repository, preset); message is one line for the CLI."""


@dataclass
class ExportReport:
    """What one export did, for the CLI's summary table and for benchmarks."""

    path: Path
    manifest: Manifest
    seconds: dict[str, float] = field(default_factory=dict)
    fused: dict[str, int] = field(default_factory=dict)


def preset_of(cfg: ModelConfig) -> str | None:
    """The preset whose shape (for cfg.arch) matches cfg, if any: the fallback for runs that
    do not record their preset (a run saved mid-training, before its final metrics.json)."""
    keys = ("d_model", "head_dim", "heads", "layers", "ffn_dim")
    for name in PRESETS:
        ref = from_preset(name, cfg.arch, vocab_size=cfg.vocab_size, num_labels=cfg.num_labels)
        if all(getattr(ref, k) == getattr(cfg, k) for k in keys):
            return name
    return None


def default_name(run: Run) -> str:
    """`<arch>-<preset>` per docs/architecture.md, else the run folder's name lower-cased.

    Training records the preset in metrics.json; only when it is missing is it recovered
    from the model's shape.
    """
    recorded = run.metrics.get("preset")
    preset = recorded if isinstance(recorded, str) and recorded else preset_of(run.config)
    if preset:
        return f"{run.config.arch}-{preset}"
    return run.path.name.lower()


def check_repo(repo: Path) -> None:
    """Raise ExportError unless `repo` is (or can be made) a writable folder."""
    if repo.exists() and not repo.is_dir():
        raise ExportError(f"model repository {repo} is not a folder")
    try:
        repo.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=repo):
            pass
    except OSError as exc:
        raise ExportError(f"model repository {repo} is not writable: {exc.strerror or exc}") from exc


def check_name(name: str) -> None:
    """Raise ExportError for a name the service would refuse, before any work is done."""
    if not MODEL_NAME_RE.match(name):
        raise ExportError(f"model name {name!r} must match {MODEL_NAME_RE.pattern}")


def _versions() -> dict[str, str]:
    """Library versions that produced the files: a parity proof holds for these."""
    import onnxconverter_common  # heavy, and needed only once files are written

    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxconverter_common": onnxconverter_common.__version__,
    }


@dataclass
class _Build:
    """The variant files written so far in the staging folder, with what each must prove."""

    files: dict[str, Path] = field(default_factory=dict)
    tolerances: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    fused: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        """Whether some variant must still prove parity on another provider (needs the reference)."""
        return any(f in FP16_FILES for f in self.files)

    def add(self, file: str, path: Path, tolerance: float) -> None:
        """Record a written variant; only recorded files are proven and published."""
        self.files[file], self.tolerances[file] = path, tolerance


@contextmanager
def _timed(step: str, seconds: dict[str, float]) -> Iterator[None]:
    """Record a step's wall time (only if it finished)."""
    t0 = time.perf_counter()
    yield
    seconds[step] = time.perf_counter() - t0


def _build_variants(model: Encoder, cfg: ModelConfig, tmp: Path, options: ExportOptions) -> _Build:
    """Write model.onnx and the optional variants; all derive from the fp32 graph."""
    build = _Build()
    with _timed("export", build.seconds):
        torch.manual_seed(options.seed)
        export_onnx(model, tmp / FP32_FILE, opset=options.opset)
        build.add(FP32_FILE, tmp / FP32_FILE, parity.FP32_TOLERANCE)
    if options.optimize:
        with _timed("optimize", build.seconds):
            build.fused = opt.optimize(tmp / FP32_FILE, tmp / OPT_FILE, cfg)
            build.add(OPT_FILE, tmp / OPT_FILE, parity.FP32_TOLERANCE)
    if options.fp16:
        with _timed("fp16", build.seconds):
            opt.to_fp16(tmp / FP32_FILE, tmp / FP16_FILE)
            build.add(FP16_FILE, tmp / FP16_FILE, options.fp16_tolerance)
    if options.gpu:
        with _timed("gpu", build.seconds):
            build.fused = opt.fuse_for_gpu(tmp / FP32_FILE, tmp / GPU_FILE, cfg)
            build.add(GPU_FILE, tmp / GPU_FILE, options.fp16_tolerance)
    return build


def _prove_parity(model: Encoder, build: _Build, name: str, tmp: Path, seed: int) -> dict[str, Parity]:
    """Measure every variant against PyTorch on CPU; raise ParityError before anything is
    published. When a variant is pending on another provider, the batches are written as
    REFERENCE_FILE for the service to repeat the measurement there."""
    with _timed("parity", build.seconds):
        batches = parity.reference_batches(model, seed=seed)
        emulated = {f: opt.cpu_emulated_ops(p) for f, p in build.files.items() if f in FP16_FILES}
        results = parity.measure(model, build.files, build.tolerances, batches=batches, emulated=emulated)
    for file, result in results.items():
        parity.check(f"{name}/{file}", result)
    if build.pending:
        reference.save(tmp / REFERENCE_FILE, batches)
    return results


def _variants(build: _Build, results: dict[str, Parity]) -> dict[str, Variant]:
    """The manifest's record of each file: hash and size for the service, parity for the reader."""
    return {
        file: Variant(
            file=file,
            precision="fp16" if file in FP16_FILES else "fp32",
            optimized=file in OPTIMIZED_FILES,
            sha256=sha256_file(path),
            bytes=path.stat().st_size,
            parity=results[file],
            parity_pending=FP16_PENDING if file in FP16_FILES else [],
            operators=opt.operator_counts(path),
        )
        for file, path in build.files.items()
    }


# the model config's fields the manifest repeats under their own names
CONFIG_FIELDS = ("arch", "layers", "heads", "d_model", "head_dim", "ffn_dim", "norm", "vocab_size", "pad_id")


def _manifest(run: Run, name: str, opset: int, build: _Build, results: dict[str, Parity]) -> Manifest:
    """Everything the service and the reports need to know about the model, without torch."""
    cfg = run.config
    variants = _variants(build, results)
    inputs, outputs = io_specs(cfg.num_labels, cfg.d_model)
    random_init = bool(run.metrics.get("random_init", False))
    return Manifest(
        name=name,
        **{k: getattr(cfg, k) for k in CONFIG_FIELDS},
        params=count_parameters(run.model),
        flops_per_token=flops_per_token(cfg),
        opset=opset,
        max_sequence_length=cfg.max_len,
        labels=list(run.labels),
        inputs=inputs,
        outputs=outputs,
        variants=variants,
        sha256=variants[FP32_FILE].sha256,
        test_accuracy=run.metrics.get("test_accuracy"),
        validation_accuracy=run.metrics.get("validation_accuracy"),
        test_examples=(run.metrics.get("examples") or {}).get("test"),
        source_run=None if random_init else str(Path(run.path).resolve()),
        random_init=random_init,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        versions=_versions(),
        fused_operators=build.fused,
        reference=REFERENCE_FILE if build.pending else None,
        export_seconds={k: round(v, 3) for k, v in build.seconds.items()},
    )


def _write_folder(tmp: Path, tokenizer: Tokenizer, manifest: Manifest) -> None:
    """Tokenizer and manifest beside the graphs, every file world-readable: the server may
    run as another user (containers), and mkstemp-written files are 0600."""
    tokenizer.save(tmp / manifest.tokenizer)
    atomic.write_json(tmp / "manifest.json", manifest.model_dump(mode="json"))
    for f in tmp.iterdir():
        f.chmod(0o644)


def export_model(run: Run, repo: str | Path, name: str, options: ExportOptions | None = None) -> ExportReport:
    """Export `run.model` to `<repo>/<name>/` with parity-checked variants and a manifest."""
    options = options or ExportOptions()
    repo = Path(repo)
    check_name(name)
    check_repo(repo)
    model = run.model.eval()
    with atomic.staged_dir(repo / name) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes the folder 0700; the server may run as another user
        build = _build_variants(model, run.config, tmp, options)
        results = _prove_parity(model, build, name, tmp, options.seed)
        manifest = _manifest(run, name, options.opset, build, results)
        _write_folder(tmp, run.tokenizer, manifest)
    return ExportReport(path=repo / name, manifest=manifest, seconds=build.seconds, fused=build.fused)


def export_run(
    run_dir: str | Path, repo: str | Path, *, name: str | None = None, options: ExportOptions | None = None
) -> Path:
    """Export a training run directory; returns the model folder. Raises RunDirError,
    ExportError or parity.ParityError (nothing written in every case).

    The repository is checked before the run's weights are loaded, so a bad --repo is
    reported without waiting for a large model to load.
    """
    check_repo(Path(repo))
    run = load_run(run_dir)
    return export_model(run, repo, name or default_name(run), options).path


def synthetic_tokenizer(vocab_size: int, max_length: int) -> Tokenizer:
    """[PAD], [UNK], then `w2 ... w{n-1}`: real text maps mostly to [UNK], which is fine
    for latency benchmarks (the work per token does not depend on which token it is)."""
    return Tokenizer([PAD, UNK, *(f"w{i}" for i in range(2, vocab_size))], max_length=max_length)


def random_config(preset: str, arch: Arch, *, vocab_size: int = RANDOM_VOCAB) -> ModelConfig:
    """The random-init model of a preset; export's one check that the preset exists."""
    if preset not in PRESETS:
        raise ExportError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return from_preset(preset, arch, vocab_size=vocab_size, num_labels=len(LEXNAMES), dropout=0.0)


def export_random(
    preset: str,
    arch: Arch,
    repo: str | Path,
    *,
    name: str | None = None,
    vocab_size: int = RANDOM_VOCAB,
    options: ExportOptions | None = None,
) -> ExportReport:
    """Random-weight `<arch>-<preset>-random` export for speed benchmarks (manifest random_init).

    options.seed seeds the weights as well as the parity batches.
    """
    options = options or ExportOptions()
    cfg = random_config(preset, arch, vocab_size=vocab_size)
    run = random_run(cfg, synthetic_tokenizer(vocab_size, cfg.max_len), list(LEXNAMES), seed=options.seed)
    return export_model(run, repo, name or f"{arch}-{preset}-random", options)
