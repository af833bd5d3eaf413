"""Python entry points: a training run (or a random-init preset) -> one model folder.

Everything is built in a temporary sibling folder (contract.atomic.staged_dir) and renamed
into the repository only after every variant passed parity and the manifest validated,
so a reader never sees half a model and a failed export leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import onnx
import onnxruntime
import torch

from contract import atomic
from contract.manifest import MODEL_NAME_RE, Manifest, Variant, io_specs, sha256_file
from contract.tokenizer import PAD, UNK, Tokenizer
from export import optimize as opt
from export import parity
from export.onnx_export import export_onnx
from models.checkpoint import Run, load_run, random_run
from models.config import PRESETS, Arch, ModelConfig, flops_per_token, from_preset
from models.data import LEXNAMES
from models.encoder import count_parameters

FP32_FILE, OPT_FILE, FP16_FILE = "model.onnx", "model.opt.onnx", "model.fp16.onnx"
RANDOM_VOCAB = 30522  # BERT's vocabulary size: the embedding table matches BERT-base


class ExportError(ValueError):
    """Bad input to an export (name, repository, preset); message is one line for the CLI."""


@dataclass
class ExportReport:
    """What one export did, for the CLI's summary table and for benchmarks."""

    path: Path
    manifest: Manifest
    seconds: dict[str, float] = field(default_factory=dict)
    fused: dict[str, int] = field(default_factory=dict)


# Test hook: called with the step name as each step starts ("export", "optimize", "fp16",
# "parity", "write"), so a test can make a step raise and check nothing is left behind.
_step_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _step_hook is not None:
        _step_hook(name)


def preset_of(cfg: ModelConfig) -> str | None:
    """The preset whose shape (for cfg.arch) matches cfg, if any: used for default names."""
    keys = ("d_model", "head_dim", "heads", "layers", "ffn_dim")
    for name in PRESETS:
        ref = from_preset(name, cfg.arch, vocab_size=cfg.vocab_size, num_labels=cfg.num_labels)
        if all(getattr(ref, k) == getattr(cfg, k) for k in keys):
            return name
    return None


def default_name(run: Run) -> str:
    """`<arch>-<preset>` per docs/architecture.md, else the run folder's name lower-cased."""
    preset = preset_of(run.config)
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
    if not MODEL_NAME_RE.match(name):
        raise ExportError(f"model name {name!r} must match {MODEL_NAME_RE.pattern}")


def _versions() -> dict[str, str]:
    import onnxconverter_common

    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxconverter_common": onnxconverter_common.__version__,
    }


def export_model(
    run: Run,
    repo: str | Path,
    name: str,
    *,
    opset: int = 17,
    fp16: bool = False,
    optimize: bool = False,
    seed: int = 0,
    fp16_tolerance: float = parity.FP16_TOLERANCE,
) -> ExportReport:
    """Export `run.model` to `<repo>/<name>/` with parity-checked variants and a manifest."""
    repo = Path(repo)
    check_name(name)
    check_repo(repo)
    cfg, model = run.config, run.model.eval()
    seconds: dict[str, float] = {}
    fused: dict[str, int] = {}
    with atomic.staged_dir(repo / name) as tmp:
        # mkdtemp makes the folder 0700; the server may run as another user (containers).
        tmp.chmod(0o755)
        files = {FP32_FILE: tmp / FP32_FILE}
        tolerances = {FP32_FILE: parity.FP32_TOLERANCE}

        _step("export")
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        export_onnx(model, files[FP32_FILE], opset=opset)
        seconds["export"] = time.perf_counter() - t0

        if optimize:
            _step("optimize")
            t0 = time.perf_counter()
            fused = opt.optimize(files[FP32_FILE], tmp / OPT_FILE, cfg)
            files[OPT_FILE], tolerances[OPT_FILE] = tmp / OPT_FILE, parity.FP32_TOLERANCE
            seconds["optimize"] = time.perf_counter() - t0
        if fp16:
            _step("fp16")
            t0 = time.perf_counter()
            opt.to_fp16(files[FP32_FILE], tmp / FP16_FILE)
            files[FP16_FILE], tolerances[FP16_FILE] = tmp / FP16_FILE, fp16_tolerance
            seconds["fp16"] = time.perf_counter() - t0

        _step("parity")
        t0 = time.perf_counter()
        results = parity.measure(model, files, tolerances, seed=seed)
        seconds["parity"] = time.perf_counter() - t0
        for file, result in results.items():
            parity.check(f"{name}/{file}", result)

        _step("write")
        variants = {
            file: Variant(
                file=file,
                precision="fp16" if file == FP16_FILE else "fp32",
                optimized=file == OPT_FILE,
                sha256=sha256_file(path),
                bytes=path.stat().st_size,
                parity=results[file],
            )
            for file, path in files.items()
        }
        inputs, outputs = io_specs(cfg.num_labels, cfg.d_model)
        manifest = Manifest(
            name=name,
            arch=cfg.arch,
            layers=cfg.layers,
            heads=cfg.heads,
            d_model=cfg.d_model,
            head_dim=cfg.head_dim,
            ffn_dim=cfg.ffn_dim,
            norm=cfg.norm,
            params=count_parameters(model),
            flops_per_token=flops_per_token(cfg),
            opset=opset,
            max_sequence_length=cfg.max_len,
            vocab_size=cfg.vocab_size,
            pad_id=cfg.pad_id,
            labels=list(run.labels),
            inputs=inputs,
            outputs=outputs,
            variants=variants,
            sha256=variants[FP32_FILE].sha256,
            test_accuracy=run.metrics.get("test_accuracy"),
            validation_accuracy=run.metrics.get("validation_accuracy"),
            source_run=None if run.metrics.get("random_init") else str(Path(run.path).resolve()),
            random_init=bool(run.metrics.get("random_init", False)),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            versions=_versions(),
            fused_operators=fused,
            export_seconds={k: round(v, 3) for k, v in seconds.items()},
        )
        run.tokenizer.save(tmp / manifest.tokenizer)
        atomic.write_json(tmp / "manifest.json", manifest.model_dump(mode="json"))
        for f in tmp.iterdir():  # mkstemp-written files are 0600; readers may be another user
            f.chmod(0o644)
    return ExportReport(path=repo / name, manifest=manifest, seconds=seconds, fused=fused)


def export_run(
    run_dir: str | Path,
    repo: str | Path,
    *,
    name: str | None = None,
    opset: int = 17,
    fp16: bool = False,
    optimize: bool = False,
) -> Path:
    """Export a training run directory; returns the model folder. Raises RunDirError,
    ExportError or parity.ParityError (nothing written in every case)."""
    run = load_run(run_dir)
    return export_model(run, repo, name or default_name(run), opset=opset, fp16=fp16, optimize=optimize).path


def synthetic_tokenizer(vocab_size: int, max_length: int) -> Tokenizer:
    """[PAD], [UNK], then `w2 ... w{n-1}`: real text maps mostly to [UNK], which is fine
    for latency benchmarks (the work per token does not depend on which token it is)."""
    return Tokenizer([PAD, UNK, *(f"w{i}" for i in range(2, vocab_size))], max_length=max_length)


def random_config(preset: str, arch: Arch, *, vocab_size: int = RANDOM_VOCAB) -> ModelConfig:
    if preset not in PRESETS:
        raise ExportError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return from_preset(preset, arch, vocab_size=vocab_size, num_labels=len(LEXNAMES), dropout=0.0)


def export_random(
    preset: str,
    arch: Arch,
    repo: str | Path,
    *,
    name: str | None = None,
    opset: int = 17,
    fp16: bool = False,
    optimize: bool = False,
    vocab_size: int = RANDOM_VOCAB,
    seed: int = 0,
    fp16_tolerance: float = parity.FP16_TOLERANCE,
) -> ExportReport:
    """Random-weight `<arch>-<preset>-random` export for speed benchmarks (manifest random_init)."""
    cfg = random_config(preset, arch, vocab_size=vocab_size)
    run = random_run(cfg, synthetic_tokenizer(vocab_size, cfg.max_len), list(LEXNAMES), seed=seed)
    return export_model(
        run,
        repo,
        name or f"{arch}-{preset}-random",
        opset=opset,
        fp16=fp16,
        optimize=optimize,
        seed=seed,
        fp16_tolerance=fp16_tolerance,
    )


def threads_hint() -> int:
    """Cores this process may use (affinity-aware), for the CLI's --threads default."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
