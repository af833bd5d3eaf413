"""What a load-test command (sweep, capacity) prints around its run: the plan line and its notes,
the plan's steps with --dry-run, and progress on stderr.

stdout carries the command's results (plans, summaries), so progress never goes there. On a
terminal a rich bar shows where the run is; anywhere else (CI logs, pipes) one plain line per
step, since a redrawn bar would flood a log with control sequences.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Self, TypeVar

from contract.cli import fail
from loadtest.client import load as hc
from loadtest.models import PlanError

S = TypeVar("S")
P = TypeVar("P")


class StepProgress:
    """A rich bar (rich imported only on a terminal) or plain lines; subclasses phrase the steps."""

    def __init__(self, name: str, total: int, *, eta: bool) -> None:
        """`eta`: show the time remaining (steps of even length) rather than the time elapsed."""
        self.bar: Any = None
        if sys.stderr.isatty():
            # rich only for a terminal: pipes and CI logs get plain lines and skip its import
            from rich import progress as rp
            from rich.console import Console

            clock = rp.TimeRemainingColumn() if eta else rp.TimeElapsedColumn()
            self.bar = rp.Progress(
                rp.TextColumn("{task.description}"),
                rp.BarColumn(),
                rp.MofNCompleteColumn(),
                clock,
                console=Console(stderr=True),
            )
            self.task = self.bar.add_task(name, total=total)

    def __enter__(self) -> Self:
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.__exit__(*exc)

    def step(self, message: str, description: str) -> None:
        """One step done: `message` printed above the bar (or as a line), `description` beside it."""
        if self.bar:
            self.bar.console.print(message, highlight=False)
            self.bar.update(self.task, advance=1, description=description)
        else:
            print(message, file=sys.stderr, flush=True)

    def skip(self, steps: int) -> None:
        """Steps that will not run after all (a search that stopped early), so the bar still ends full."""
        if self.bar:
            self.bar.update(self.task, advance=steps)


def planned(plan_fn: Callable[[S], P], s: S) -> P:
    """`plan_fn(s)` with its notes printed, or exit 2 with one line (bad plan, no service)."""
    try:
        pl = plan_fn(s)
    except (PlanError, hc.ServiceUnreachable) as exc:
        fail(str(exc))
    except hc.httpx.HTTPError as exc:
        fail(f"service at {s.url}: {type(exc).__name__}: {exc}")  # type: ignore[attr-defined]
    for n in pl.notes:  # type: ignore[attr-defined]
        print(f"note: {n}", file=sys.stderr)
    return pl


def announce(args: Any, line: str, steps: list[Any]) -> bool:
    """The plan's line on stderr; with --dry-run also each step's label on stdout, and True: the
    command stops there."""
    print(line, file=sys.stderr)
    if args.dry_run:
        for step in steps:
            print(step.label())
    return bool(args.dry_run)


# what a measuring subcommand's namespace holds besides its settings (see run_flags)
RUN_SWITCHES = ("command", "no_report", "dry_run")


def run_flags(parser: Any, report: str) -> None:
    """The flags every measuring subcommand has besides its settings."""
    parser.add_argument("--no-report", action="store_true", help=f"skip {report} report.md and plots")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
