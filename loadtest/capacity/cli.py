"""The `capacity` subcommand: settings from flags, a progress bar per probe, a summary table."""

from __future__ import annotations

import sys
from typing import Any

from contract.cli import fail, settings_flags, settings_from
from contract.results import CapacityRatio, CapacityRow
from loadtest.capacity.runner import CapacityRunner, CapacitySettings, plan, ratios
from loadtest.client import load as hc
from loadtest.console import RUN_SWITCHES, StepProgress, announce, planned, run_flags
from loadtest.report.markdown import write_report


class _ProbeProgress(StepProgress):
    """One step per probe; each search may use up to `max_probes` of them."""

    def __init__(self, targets: int, max_probes: int) -> None:
        super().__init__("capacity", targets * max_probes, eta=False)
        self.max_probes = max_probes
        self.used = 0

    def probe(self, target: Any, p: Any) -> None:
        self.used += 1
        p99 = f"{p.p99_ms:.1f} ms" if p.p99_ms is not None else "–"
        mark = "pass" if p.passed else f"fail ({p.reason})"
        msg = f"{target.label()}: {p.rate:,.1f} req/s for {p.duration_s:.1f} s: p99 {p99}, {p.errors} errors: {mark}"
        self.step(msg, target.label())

    def search_done(self) -> None:
        """A search that stopped early gives its unused probes back to the bar."""
        self.skip(self.max_probes - self.used)
        self.used = 0


def _range(lo: float | None, hi: float | None, fmt: str = ",.0f") -> str:
    return f"[{lo:{fmt}}-{hi:{fmt}}]" if lo is not None and hi is not None else ""


def summary(
    rows: list[CapacityRow],
    ratios: list[CapacityRatio],
    slo: float,
    max_err: float,
    ceiling: list[CapacityRow],
) -> str:
    lines = [
        f"capacity at p99 <= {slo:g} ms (from intended send times), errors <= {max_err:.2%}, Poisson arrivals "
        "(median over interleaved rounds [lowest-highest round]):"
    ]
    for r in [*rows, *ceiling]:
        share = f", {r.ceiling_share:.0%} of the service's ceiling" if r.ceiling_share is not None else ""
        lines.append(
            f"  {r.model:<20} b={r.batch:<3} s={r.seq:<4} {r.capacity_rps:>9,.1f} req/s "
            f"{_range(r.capacity_lo_rps, r.capacity_hi_rps)}  ({r.status}, {r.rounds} rounds, {r.probes} windows"
            f"{'' if r.stable is not False else ', unstable'}{share})"
        )
    for x in ratios:
        ratio = f"{x.sha_over_mha:.2f}" if x.sha_over_mha is not None else "–"
        iv = _range(x.sha_over_mha_lo, x.sha_over_mha_hi, ".2f")
        lines.append(
            f"  SHA/MHA capacity at b={x.batch} s={x.seq}: {ratio} {iv} ({x.sha} / {x.mha}, {x.rounds} rounds)"
        )
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    c = sub.add_parser("capacity", help="highest open-loop rate per model and shape whose p99 meets an SLO")
    settings_flags(c, CapacitySettings)
    run_flags(c, "rewriting")


def _settings(args: Any) -> CapacitySettings:
    return settings_from(CapacitySettings, args, RUN_SWITCHES)


def cmd_capacity(args: Any) -> int:
    s = _settings(args)
    pl = planned(plan, s)
    searches = len(pl.targets) + (len(pl.shapes()) if s.ceiling_url else 0)
    rounds = max(s.min_rounds, s.max_rounds)
    line = (
        f"capacity: {searches} searches in {s.min_rounds}-{rounds} interleaved rounds (p99 <= {s.slo_p99_ms:g} ms, "
        f"at most {s.max_probes} probes of >= {s.probe_duration:g} s each), at most about "
        f"{pl.estimate_s() / 60:.1f} min; results -> {s.out}"
    )
    if announce(args, line, pl.targets):
        return 0
    try:
        with _ProbeProgress(searches * rounds, s.max_probes) as prog:
            runner = CapacityRunner(pl, prog.probe, prog.search_done)
            rows = runner.run()
    except hc.ServiceUnreachable as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        print(f"interrupted: finished searches are in {s.out}", file=sys.stderr)
        return 130
    print(f"wrote {s.out / 'capacity.csv'} and {s.out / 'capacity.json'}", file=sys.stderr)
    if not args.no_report:
        print(f"wrote {write_report(s.out)}", file=sys.stderr)
    print(summary(rows, ratios(rows, runner.rounds), s.slo_p99_ms, s.max_error_rate, runner.ceiling))
    return 0
