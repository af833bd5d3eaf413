"""Progress of a long load-test command (sweep, capacity) on stderr.

stdout carries the command's results (plans, summaries), so progress never goes there. On a
terminal a rich bar shows where the run is; anywhere else (CI logs, pipes) one plain line per
step, since a redrawn bar would flood a log with control sequences.
"""

from __future__ import annotations

import sys
from typing import Any, Self


class StepProgress:
    """A rich bar (rich imported only on a terminal) or plain lines; subclasses phrase the steps."""

    def __init__(self, name: str, total: int, *, eta: bool) -> None:
        """`eta`: show the time remaining (steps of even length) rather than the time elapsed."""
        self.bar: Any = None
        if sys.stderr.isatty():
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
