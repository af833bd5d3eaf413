"""`python -m loadtest sweep ...` and `python -m loadtest report RESULTS_DIR` (console script h2h-loadtest)."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from contract.cli import OneLineArgumentParser, fail, settings_from
from loadtest.console import StepProgress, announce, planned
from loadtest.settings import LoadtestSettings

GRID_HELP = "comma list '1,2,4', doubling range '1..64', or pattern '16,32,...,512'"


def _default(settings: type[BaseModel], name: str) -> str:
    """A settings field's declared default as `--help` shows it: the settings class states each
    default once, so the help cannot drift from what a run actually uses."""
    value = settings.model_fields[name].default
    return f"{value:g}" if isinstance(value, float) else str(value)


def _setting_flag(parser: Any, settings: type[BaseModel], flag: str, kind: type | None, text: str) -> None:
    """A flag for the settings field of its name, its help ending in that field's declared default."""
    name = flag.removeprefix("--").replace("-", "_")
    parser.add_argument(flag, type=kind, help=f"{text} (default {_default(settings, name)})")


def build_parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(
        prog="h2h-loadtest", description="MHA vs SHA cost sweeps: in-process and over HTTP."
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    s = sub.add_parser("sweep", help="measure a batch x sequence (x concurrency) grid")
    opt = partial(_setting_flag, s, LoadtestSettings)
    s.add_argument(
        "--preset",
        choices=["default", "paper", "tiny"],
        help="grid and models for flags left out (default: a 1-2 minute demo; paper: "
        "mha-base-random vs sha-base-random)",
    )
    s.add_argument(
        "--models", help="comma list of repository folder names, or mha/sha for the single model of that arch"
    )
    s.add_argument("--batch", help=f"batch sizes: {GRID_HELP}")
    s.add_argument("--seq", help=f"sequence lengths: {GRID_HELP} (clamped to each model's maximum)")
    s.add_argument("--concurrency", help=f"closed-loop concurrency levels (http): {GRID_HELP}")
    s.add_argument("--rate", help="open-loop request rates per second, Poisson arrivals (http), e.g. 20,50")
    s.add_argument(
        "--mode", choices=["inproc", "http", "both"], help="where to measure (default: the preset's)"
    )
    s.add_argument("--duration", type=float, help="seconds per http point")
    opt("--warmup", float, "http warm-up seconds per point")
    opt("--repeats", int, "in-process: most timed runs per point")
    opt("--inproc-budget", float, "in-process: seconds per point")
    opt("--repo", None, "model repository for in-process runs")
    opt("--url", None, "running service")
    opt("--client-procs", int, "load client processes for http points")
    opt("--out", None, "results folder")
    s.add_argument("--provider", choices=["auto", "cuda", "cpu"], help="in-process execution provider")
    s.add_argument("--variant", help="in-process model variant, e.g. model.opt.onnx")
    opt("--max-points", int, "refuse grids larger than this")
    s.add_argument("--seed", type=int)
    s.add_argument("--no-report", action="store_true", help="skip writing report.md and plots")
    s.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    _capacity_parser(sub)
    from loadtest.profile.cli import add_parser as profile_parser

    profile_parser(sub)
    r = sub.add_parser("report", help="write report.md and PNG plots from a results folder")
    r.add_argument("results", help="results folder (with results.json and/or capacity.json)")
    return p


def _capacity_parser(sub: Any) -> None:
    from loadtest.capacity.runner import CapacitySettings

    d = partial(_default, CapacitySettings)
    c = sub.add_parser("capacity", help="highest open-loop rate per model and shape whose p99 meets an SLO")
    opt = partial(_setting_flag, c, CapacitySettings)
    opt("--slo-p99-ms", float, "p99 latency target in ms, from intended send times")
    opt("--models", None, "comma list of served model names or mha/sha")
    opt("--batch", None, f"rows per request: {GRID_HELP}")
    opt("--seq", None, f"sequence lengths: {GRID_HELP}")
    opt("--max-error-rate", float, "largest error share a passing probe may have, 429s included")
    c.add_argument(
        "--probe-duration",
        type=float,
        help=f"seconds per probe (default {d('probe_duration')}; longer at low rates)",
    )
    opt("--max-probes", int, "probes per model and shape")
    opt("--tolerance", float, "stop bisecting when the bracket is this narrow")
    c.add_argument(
        "--start-rate", type=float, help="first rate in req/s (default: half the closed-loop c=8 rate)"
    )
    opt("--url", None, "running service")
    opt("--out", None, "results folder")
    opt("--client-procs", int, "load client processes")
    opt("--timeout", float, "per-request timeout in seconds")
    c.add_argument("--seed", type=int)
    c.add_argument("--no-report", action="store_true", help="skip rewriting report.md and plots")
    c.add_argument("--dry-run", action="store_true", help="print the plan and exit")


def _settings(args: Any) -> LoadtestSettings:
    return settings_from(LoadtestSettings, args)


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
