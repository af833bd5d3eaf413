"""`python -m export` / `h2h-export`: run directory (or random-init preset) -> model folder.

Exit codes: 0 exported; 1 parity failed or the exporter broke (nothing written);
2 bad input (missing/corrupt run dir, unknown preset, unwritable repository, bad flags),
reported as one `error: ...` line on stderr. Paths of the written folders go to stdout,
one per line, so scripts can capture them; the summary table goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from contract.cli import OneLineArgumentParser, fail, settings_flags, settings_from
from export.settings import RANDOM_VOCAB, ExportCliSettings, ExportOptions

if TYPE_CHECKING:
    from export.api import ExportReport

ARCHES = {"mha": ("mha",), "sha": ("sha",), "both": ("mha", "sha")}  # --arch -> the models written


def build_parser() -> OneLineArgumentParser:
    """Flags from ExportCliSettings, whose defaults are the API's (export.settings)."""
    p = OneLineArgumentParser(
        prog="h2h-export",
        description="Export a training run (or a random-init preset) to an ONNX model folder with a "
        "parity-checked manifest.",
    )
    settings_flags(p, ExportCliSettings, positional=["run_dir"])
    return p


def _summary(reports: list[ExportReport]) -> None:
    """Parity, size and timings per variant on stderr, read from the manifests as written."""
    # rich after the export: --help and a bad flag answer without loading it
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
    return settings_from(ExportCliSettings, args).options()


def _export(args: ExportCliSettings, reports: list[ExportReport]) -> None:
    """Through export.api's public entry points, as scripts and tests use them; each model
    is appended to `reports` as soon as it is written, so a later failure still lists it."""
    # torch (through export.api) only once the flags are good: --help and exit 2 stay instant
    from contract.manifest import load_manifest
    from export import api

    options = args.options()
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


def _run(args: ExportCliSettings, reports: list[ExportReport]) -> int:
    """Map every failure to the documented exit code and one stderr line (no tracebacks)."""
    # torch-importing modules, deferred as in _export
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
    args = settings_from(ExportCliSettings, build_parser().parse_args(argv))

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
