"""`python -m loadtest sweep ...` and `python -m loadtest report RESULTS_DIR` (console script h2h-loadtest)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from contract.cli import OneLineArgumentParser, fail, settings_flags, settings_from
from loadtest.console import RUN_SWITCHES, StepProgress, announce, planned, run_flags
from loadtest.settings import LoadtestSettings
from loadtest.sweep.grid import GRID_HELP

# what each sweep flag means; types, choices, env names and defaults come from LoadtestSettings
SWEEP_HELP = {
    "preset": "grid and models for flags left out: default is a 1-2 minute demo, paper is "
    "mha-base-random vs sha-base-random, tiny is seconds",
    "models": "comma list of repository folder names, or mha/sha for the single model of that arch",
    "batch": f"batch sizes: {GRID_HELP}",
    "seq": f"sequence lengths: {GRID_HELP} (clamped to each model's maximum)",
    "concurrency": f"closed-loop concurrency levels (http): {GRID_HELP}",
    "rate": "open-loop request rates per second, Poisson arrivals (http), e.g. 20,50",
    "mode": "where to measure (default: the preset's)",
    "repo": "model repository for in-process runs",
    "url": "running service",
    "out": "results folder",
    "duration": "seconds per http point (default: the preset's)",
    "warmup": "http warm-up seconds per point",
    "repeats": "in-process: most timed runs per point",
    "inproc_budget": "in-process: seconds per point",
    "provider": "in-process execution provider",
    "variant": "in-process model variant, e.g. model.opt.onnx",
    "timeout": "per-request timeout in seconds (http)",
    "client_procs": "load client processes for http points",
    "max_points": "refuse grids larger than this",
    "seed": "seed of the request bodies and arrival times",
}


def build_parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(
        prog="h2h-loadtest", description="MHA vs SHA cost sweeps: in-process and over HTTP."
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    s = sub.add_parser("sweep", help="measure a batch x sequence (x concurrency) grid")
    settings_flags(s, LoadtestSettings, helps=SWEEP_HELP)
    run_flags(s, "writing")
    from loadtest.capacity.cli import add_parser as capacity_parser
    from loadtest.profile.cli import add_parser as profile_parser

    capacity_parser(sub)
    profile_parser(sub)
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

    def __call__(self, i: int, point: Any, row: dict[str, Any]) -> None:
        self.done += 1
        p50 = row.get("p50_ms")
        msg = (
            f"[{self.done}/{self.total}] {point.label()}: p50 "
            + (f"{p50:.2f} ms" if p50 is not None else "–")
            + f", {row.get('tokens_per_s') or 0:,.0f} tok/s"
            + (f", {row['errors']} errors" if row.get("errors") else "")
        )
        self.step(msg, point.label())


def cmd_sweep(args: Any) -> int:
    from loadtest.client import load as hc
    from loadtest.report.markdown import write_report
    from loadtest.sweep.run import plan, run_plan

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
        f"{runner.meta.get('elapsed_s')} s)",
        file=sys.stderr,
    )
    if not args.no_report:
        path = write_report(s.out)
        print(f"wrote {path}", file=sys.stderr)
        from loadtest.report.markdown import verdict

        print(verdict(runner.rows))
    return 0


def cmd_report(args: Any) -> int:
    from loadtest.report.markdown import headline, write_report
    from loadtest.results import CAPACITY_JSON_NAME, load, load_capacity

    path = Path(args.results)
    has_sweep = (path / "results.json").is_file() or path.is_file()
    if not has_sweep and not (path / CAPACITY_JSON_NAME).is_file():
        fail(
            f"{path} has no results.json or capacity.json (run `python -m loadtest sweep --out {path}` first)"
        )
    try:
        points = load(path)["points"] if has_sweep else []
        out = write_report(path)
    except ValueError as exc:
        fail(str(exc).splitlines()[0])
    print(f"wrote {out}", file=sys.stderr)
    print(headline(points, load_capacity(path if path.is_dir() else path.parent)))
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "capacity":
        from loadtest.capacity.cli import cmd_capacity

        rc = cmd_capacity(args)
    elif args.command == "profile":
        from loadtest.profile.cli import cmd_profile

        rc = cmd_profile(args)
    else:
        rc = cmd_sweep(args) if args.command == "sweep" else cmd_report(args)
    raise SystemExit(rc)


if __name__ == "__main__":
    main()
