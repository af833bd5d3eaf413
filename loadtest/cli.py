"""`python -m loadtest sweep ...` and `python -m loadtest report RESULTS_DIR` (console script h2h-loadtest)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from contract.cli import OneLineArgumentParser, fail, settings_flags, settings_from
from contract.results import CAPACITY_JSON_NAME, SweepRow, load, load_capacity
from loadtest.capacity import cli as capacity_cli
from loadtest.client import load as hc
from loadtest.console import RUN_SWITCHES, StepProgress, announce, planned, run_flags
from loadtest.gpu import round as gpu_round
from loadtest.gpu.settings import GpuReportSettings
from loadtest.profile import cli as profile_cli
from loadtest.report.markdown import headline, verdict, write_report
from loadtest.settings import LoadtestSettings
from loadtest.sweep.run import Point, plan, run_plan


def build_parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(
        prog="h2h-loadtest", description="MHA vs SHA cost sweeps: in-process and over HTTP."
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    s = sub.add_parser("sweep", help="measure a batch x sequence (x concurrency) grid")
    settings_flags(s, LoadtestSettings)
    run_flags(s, "writing")
    capacity_cli.add_parser(sub)
    profile_cli.add_parser(sub)
    g = sub.add_parser(
        "gpu-report", help="every GPU measurement in one round on a CUDA host (make gpu-report)"
    )
    settings_flags(g, GpuReportSettings)
    r = sub.add_parser("report", help="write report.md and PNG plots from a results folder")
    r.add_argument("results", help="results folder (with results.json and/or capacity.json)")
    return p


def _settings(args: Any) -> LoadtestSettings:
    return settings_from(LoadtestSettings, args, RUN_SWITCHES)


class _Progress(StepProgress):
    """One step per measured point: its label, p50 and throughput."""

    def __init__(self, total: int) -> None:
        super().__init__("sweep", total, eta=True)
        self.total = total
        self.done = 0

    def __call__(self, i: int, point: Point, row: SweepRow) -> None:
        self.done += 1
        msg = (
            f"[{self.done}/{self.total}] {point.label()}: p50 "
            + (f"{row.p50_ms:.2f} ms" if row.p50_ms is not None else "–")
            + f", {row.tokens_per_s or 0:,.0f} tok/s"
            + (f", {row.errors} errors" if row.errors else "")
        )
        self.step(msg, point.label())


def cmd_sweep(args: Any) -> int:
    s = _settings(args)
    pl = planned(plan, s)
    modes = "+".join(pl.modes)
    intro = f"sweep: {len(pl.points)} points ({modes}), models {', '.join(pl.models)}, "
    if announce(args, intro + f"about {pl.estimate_s() / 60:.1f} min; results -> {s.out}", pl.points):
        return 0
    try:
        with _Progress(len(pl.points)) as prog:
            runner = run_plan(pl, prog)
    except hc.ServiceUnreachable as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        print(f"interrupted: partial results in {s.out}", file=sys.stderr)
        return 130
    print(
        f"wrote {s.out / 'results.csv'} and {s.out / 'results.json'} ({len(runner.rows)} points, "
        f"{runner.meta.elapsed_s} s)",
        file=sys.stderr,
    )
    if not args.no_report:
        path = write_report(s.out)
        print(f"wrote {path}", file=sys.stderr)
        print(verdict(runner.rows))
    return 0


def cmd_report(args: Any) -> int:
    path = Path(args.results)
    has_sweep = (path / "results.json").is_file() or path.is_file()
    if not has_sweep and not (path / CAPACITY_JSON_NAME).is_file():
        fail(
            f"{path} has no results.json or capacity.json (run `python -m loadtest sweep --out {path}` first)"
        )
    try:
        points = load(path).points if has_sweep else []
        out = write_report(path)
    except ValueError as exc:
        fail(str(exc).splitlines()[0])
    print(f"wrote {out}", file=sys.stderr)
    print(headline(points, load_capacity(path if path.is_dir() else path.parent)))
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "capacity":
        rc = capacity_cli.cmd_capacity(args)
    elif args.command == "profile":
        rc = profile_cli.cmd_profile(args, rebuild=write_report)
    elif args.command == "gpu-report":
        rc = gpu_round.main(settings_from(GpuReportSettings, args, ("command",)))
    else:
        rc = cmd_sweep(args) if args.command == "sweep" else cmd_report(args)
    raise SystemExit(rc)


if __name__ == "__main__":
    main()
