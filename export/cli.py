"""`python -m export` / `h2h-export`: run directory (or random-init preset) -> model folder.

Exit codes: 0 exported; 1 parity failed or the exporter broke (nothing written);
2 bad input (missing/corrupt run dir, unknown preset, unwritable repository, bad flags),
reported as one `error: ...` line on stderr. Paths of the written folders go to stdout,
one per line, so scripts can capture them; the summary table goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from contract.cli import OneLineArgumentParser, fail
from export.settings import (
    DEFAULT_OPSET,
    DEFAULT_RANDOM_PRESET,
    FP16_TOLERANCE,
    MAX_OPSET,
    MIN_OPSET,
    RANDOM_VOCAB,
    ExportOptions,
)

if TYPE_CHECKING:
    from export.api import ExportReport

ARCHES = {"mha": ("mha",), "sha": ("sha",), "both": ("mha", "sha")}


def build_parser() -> OneLineArgumentParser:
    """Flags, with defaults from export.settings (the API uses the same)."""
    p = OneLineArgumentParser(
        prog="h2h-export",
        description="Export a training run (or a random-init preset) to an ONNX model folder with a "
        "parity-checked manifest.",
    )
    p.add_argument("run_dir", nargs="?", type=Path, help="training run directory (runs/<name>/)")
    p.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository folder")
    p.add_argument("--name", help="model folder name (default <arch>-<preset>)")
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {MIN_OPSET}-{MAX_OPSET} (default {DEFAULT_OPSET})",
    )
    p.add_argument("--fp16", action="store_true", help="also write model.fp16.onnx")
    p.add_argument(
        "--fp16-tolerance",
        type=float,
        default=FP16_TOLERANCE,
        help=f"max |logits diff| allowed for the fp16 variant (default {FP16_TOLERANCE:g}; deep models may "
        "need more)",
    )
    p.add_argument("--optimize", action="store_true", help="also write model.opt.onnx (ORT optimizer)")
    p.add_argument(
        "--gpu",
        action="store_true",
        help="also write model.gpu.onnx: fused for CUDA, then fp16 (--fp16-tolerance); the service proves "
        "its parity on CUDA at start",
    )
    p.add_argument(
        "--random-init",
        action="store_true",
        help="export random weights of --preset (speed benchmarks only; no RUN_DIR)",
    )
    p.add_argument(
        "--preset",
        default=None,
        help=f"with --random-init: tiny, small or base (default {DEFAULT_RANDOM_PRESET})",
    )
    p.add_argument("--arch", choices=sorted(ARCHES), default="both", help="with --random-init (default both)")
    p.add_argument(
        "--vocab-size", type=int, default=None, help=f"with --random-init (default {RANDOM_VOCAB})"
    )
    p.add_argument("--seed", type=int, default=0, help="weights (random-init) and parity batches")
    p.add_argument("--threads", type=int, default=None, help="torch/ORT threads (default: all cores)")
    return p


def _check_args(p: OneLineArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors before any heavy import; the preset itself is checked by export.api."""
    if args.random_init:
        if args.run_dir is not None:
            p.error("give either RUN_DIR or --random-init, not both")
        args.preset = args.preset or DEFAULT_RANDOM_PRESET
        if args.name and len(ARCHES[args.arch]) > 1:
            p.error("--name needs a single --arch (mha or sha) with --random-init")
        if args.vocab_size is not None and args.vocab_size < 3:
            p.error("--vocab-size must be at least 3")
    else:
        if args.run_dir is None:
            p.error("RUN_DIR is required (or use --random-init --preset base)")
        for flag in ("preset", "vocab_size"):
            if getattr(args, flag) is not None:
                p.error(f"--{flag.replace('_', '-')} only applies with --random-init")
    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        p.error(f"--opset {args.opset} is not supported; use {MIN_OPSET} to {MAX_OPSET}")
    if not 0 < args.fp16_tolerance <= 1:
        p.error("--fp16-tolerance must be in (0, 1]")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")


def _summary(reports: list[ExportReport]) -> None:
    """Parity, size and timings per variant on stderr, read from the manifests as written."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="export")
    for col in ("model", "variant", "MB", "max |Δlogits|", "max |Δemb|", "argmax", "tolerance", "pending on"):
        table.add_column(col, justify="left" if col in ("model", "variant") else "right")
    for r in reports:
        for v in r.manifest.variants.values():
            table.add_row(
                r.manifest.name,
                v.file,
                f"{v.bytes / 1e6:.1f}",
                f"{v.parity.max_abs_logits:.2e}",
                f"{v.parity.max_abs_embedding:.2e}",
                f"{v.parity.argmax_agreement:.3f}",
                f"{v.parity.tolerance:g}",
                ", ".join(p.removesuffix("ExecutionProvider") for p in v.parity_pending or []) or "-",
            )
    console = Console(stderr=True)
    console.print(table)
    for r in reports:
        m = r.manifest
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in m.export_seconds.items())
        fused = ", ".join(f"{k}={v}" for k, v in m.fused_operators.items()) if m.fused_operators else "-"
        console.print(f"{m.name}: {timing}; fused: {fused}")


def _options(args: argparse.Namespace) -> ExportOptions:
    """The flags as the API's one options object, for a run dir and a random-init preset alike."""
    return ExportOptions(
        opset=args.opset,
        fp16=args.fp16,
        optimize=args.optimize,
        gpu=args.gpu,
        seed=args.seed,
        fp16_tolerance=args.fp16_tolerance,
    )


def _export(args: argparse.Namespace, reports: list[ExportReport]) -> None:
    """Through export.api's public entry points, as scripts and tests use them; each model
    is appended to `reports` as soon as it is written, so a later failure still lists it."""
    from contract.manifest import load_manifest
    from export import api

    options = _options(args)
    if not args.random_init:
        path = api.export_run(args.run_dir, args.repo, name=args.name, options=options)
        reports.append(api.ExportReport(path=path, manifest=load_manifest(path)))
        return
    for arch in ARCHES[args.arch]:
        vocab_size = args.vocab_size or RANDOM_VOCAB
        reports.append(
            api.export_random(
                args.preset, arch, args.repo, name=args.name, vocab_size=vocab_size, options=options
            )
        )


def _run(args: argparse.Namespace, reports: list[ExportReport]) -> int:
    """Map every failure to the documented exit code and one stderr line (no tracebacks)."""
    from export.api import ExportError
    from export.parity import ParityError
    from models.checkpoint import RunDirError

    try:
        _export(args, reports)
    except (RunDirError, ExportError) as exc:
        fail(str(exc))
    except ParityError as exc:
        print(f"error: {exc}; nothing written", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing written for the model in progress", file=sys.stderr)
        return 130
    except Exception as exc:  # exporter/optimizer failures: one line, not a traceback
        print(f"error: export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit 0 with the written folders on stdout, else the code from _run (see module doc)."""
    p = build_parser()
    args = p.parse_args(argv)
    _check_args(p, args)

    # Heavy imports after argument checks, so `--help` and usage errors are instant.
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    reports: list[ExportReport] = []
    try:
        code = _run(args, reports)
    finally:
        if reports:
            _summary(reports)
    if code == 0:
        for r in reports:
            print(r.path)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
