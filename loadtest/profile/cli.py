"""`python -m loadtest profile`: flags, the run, the table on stdout, profile.json and report.md."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from contract.atomic import write_text
from contract.cli import fail

REPORT_NAME = "report.md"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "profile", help="where one run's time goes per model: ONNX Runtime's profiler by operator class"
    )
    p.add_argument("--repo", default="model_repository", help="model repository (default model_repository)")
    p.add_argument("--models", help="comma list of folder names or mha/sha (default: every model)")
    p.add_argument("--variant", default="model.onnx", help="comma list of variant files (default model.onnx)")
    p.add_argument("--provider", choices=["auto", "cuda", "cpu"], default="auto", help="execution provider")
    p.add_argument("--batch", type=int, default=1, help="rows (default 1)")
    p.add_argument("--seq", type=int, default=16, help="tokens per row (default 16)")
    p.add_argument("--runs", type=int, default=20, help="profiled runs after the warm-up (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="runs left out of the profile (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random token ids (default 0)")
    p.add_argument("--out", default="results/profile", help="folder for profile.json and report.md")


def _spec(args: Any) -> Any:
    from loadtest.profile.runner import ProfileSpec

    for flag in ("batch", "seq", "runs"):
        if getattr(args, flag) < 1:
            fail(f"--{flag} must be at least 1 (got {getattr(args, flag)})")
    if args.warmup < 0:
        fail(f"--warmup must be 0 or more (got {args.warmup})")
    split = lambda v: tuple(x.strip() for x in (v or "").split(",") if x.strip())  # noqa: E731
    if not split(args.variant):
        fail("--variant names no variant file (e.g. model.onnx,model.fp16.onnx)")
    return ProfileSpec(
        repo=Path(args.repo),
        models=split(args.models),
        variants=split(args.variant),
        provider=args.provider,
        batch=args.batch,
        seq=args.seq,
        runs=args.runs,
        warmup=args.warmup,
        seed=args.seed,
    )


def cmd_profile(args: Any) -> int:
    from loadtest.models import PlanError
    from loadtest.profile import render, runner
    from loadtest.profile.trace import TraceError

    spec = _spec(args)
    try:
        data = runner.profile(spec)
    except (PlanError, TraceError) as exc:
        fail(str(exc))
    if not data["rows"]:
        fail(f"nothing to profile: {'; '.join(data['notes']) or 'no models in ' + str(spec.repo)}")
    out = Path(args.out)
    path = runner.write(out, data)
    report = write_report_for(out, data)
    print(render.text_table(data))
    print(f"wrote {path} and {report}", file=sys.stderr)
    return 0


def write_report_for(out: Path, data: dict[str, Any]) -> Path:
    """report.md in `out`: a sweep's or capacity search's folder gets its whole report rebuilt (the
    profile becomes one section of it); a folder of its own gets the profile alone."""
    from loadtest import results
    from loadtest.profile import render
    from loadtest.report.markdown import write_report

    if (out / results.JSON_NAME).is_file() or (out / results.CAPACITY_JSON_NAME).is_file():
        return write_report(out)
    write_text(out / REPORT_NAME, "\n".join(["# Profile", "", *render.section_md(data)]) + "\n")
    return out / REPORT_NAME
