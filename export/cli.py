"""`python -m export` / `h2h-export`: run directory (or random-init preset) -> model folder.

Exit codes: 0 exported; 1 parity failed or the exporter broke (nothing written);
2 bad input (missing/corrupt run dir, unknown preset, unwritable repository, bad flags),
reported as one `error: ...` line on stderr. Paths of the written folders go to stdout,
one per line, so scripts can capture them; the summary table goes to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

from contract.cli import OneLineArgumentParser, fail

ARCHES = {"mha": ("mha",), "sha": ("sha",), "both": ("mha", "sha")}


def build_parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(
        prog="h2h-export",
        description="Export a training run (or a random-init preset) to an ONNX model folder with a "
        "parity-checked manifest.",
    )
    p.add_argument("run_dir", nargs="?", type=Path, help="training run directory (runs/<name>/)")
    p.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository folder")
    p.add_argument("--name", help="model folder name (default <arch>-<preset>)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17-20 (default 17)")
    p.add_argument("--fp16", action="store_true", help="also write model.fp16.onnx")
    p.add_argument(
        "--fp16-tolerance",
        type=float,
        default=1e-2,
        help="max |logits diff| allowed for the fp16 variant (default 0.01; deep models may need more)",
    )
    p.add_argument("--optimize", action="store_true", help="also write model.opt.onnx (ORT optimizer)")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="export random weights of --preset (speed benchmarks only; no RUN_DIR)",
    )
    p.add_argument("--preset", default=None, help="with --random-init: tiny, small or base (default base)")
    p.add_argument("--arch", choices=sorted(ARCHES), default="both", help="with --random-init (default both)")
    p.add_argument("--vocab-size", type=int, default=None, help="with --random-init (default 30522)")
    p.add_argument("--seed", type=int, default=0, help="weights (random-init) and parity batches")
    p.add_argument("--threads", type=int, default=None, help="torch/ORT threads (default: all cores)")
    return p


def _check_args(p: OneLineArgumentParser, args) -> None:  # noqa: ANN001
    if args.random_init:
        if args.run_dir is not None:
            p.error("give either RUN_DIR or --random-init, not both")
        from models.config import PRESETS

        args.preset = args.preset or "base"
        if args.preset not in PRESETS:
            fail(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
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
    if not 17 <= args.opset <= 20:
        p.error(f"--opset {args.opset} is not supported; use 17 to 20")
    if not 0 < args.fp16_tolerance <= 1:
        p.error("--fp16-tolerance must be in (0, 1]")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")


def _summary(reports: list) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    table = Table(title="export")
    for col in ("model", "variant", "MB", "max |Δlogits|", "max |Δemb|", "argmax", "tolerance"):
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
            )
    console = Console(stderr=True)
    console.print(table)
    for r in reports:
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in r.seconds.items())
        fused = ", ".join(f"{k}={v}" for k, v in r.fused.items()) if r.fused else "-"
        console.print(f"{r.manifest.name}: {timing}; fused: {fused}")


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    _check_args(p, args)

    # Heavy imports after argument checks, so `--help` and usage errors are instant.
    import torch

    from export import api
    from export.parity import ParityError
    from models.checkpoint import RunDirError, load_run

    if args.threads:
        torch.set_num_threads(args.threads)
    reports = []
    try:
        api.check_repo(args.repo)
        if args.random_init:
            for arch in ARCHES[args.arch]:
                reports.append(
                    api.export_random(
                        args.preset,
                        arch,
                        args.repo,
                        name=args.name,
                        opset=args.opset,
                        fp16=args.fp16,
                        optimize=args.optimize,
                        vocab_size=args.vocab_size or api.RANDOM_VOCAB,
                        seed=args.seed,
                        fp16_tolerance=args.fp16_tolerance,
                    )  # fmt: skip
                )
        else:
            run = load_run(args.run_dir)
            reports.append(
                api.export_model(
                    run,
                    args.repo,
                    args.name or api.default_name(run),
                    opset=args.opset,
                    fp16=args.fp16,
                    optimize=args.optimize,
                    seed=args.seed,
                    fp16_tolerance=args.fp16_tolerance,
                )  # fmt: skip
            )
    except (RunDirError, api.ExportError) as exc:
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
    finally:
        if reports:
            _summary(reports)
    for r in reports:
        print(r.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
