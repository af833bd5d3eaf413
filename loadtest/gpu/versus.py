"""Which way of running each model is fastest: p50 per model and shape across every in-process
result folder of a report (ONNX Runtime variants, the PyTorch reference), pure over their rows so
it is tested on CPU-made results.

A point measured in blocks of runs carries the spread of its repeats (the lowest and highest block
p50, `p50_lo_ms` / `p50_hi_ms`); a way of running is called fastest at a shape only when its
highest block p50 is below every other way's lowest, so a difference within the noise is no win.
Rows without a spread (older results) count as exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from contract.results import SweepRow

Shape = tuple[str, int, int]  # model, batch, seq


@dataclass(frozen=True)
class Cell:
    """One way's p50 at one shape, with the range of its block p50s."""

    p50_ms: float
    lo_ms: float
    hi_ms: float

    @classmethod
    def of(cls, row: SweepRow) -> Cell:
        p50 = float(row.p50_ms or 0.0)
        lo, hi = row.p50_lo_ms, row.p50_hi_ms
        return cls(p50, lo if lo is not None else p50, hi if hi is not None else p50)

    @property
    def spread(self) -> float:
        return (self.hi_ms - self.lo_ms) / self.p50_ms if self.p50_ms else 0.0

    def md(self, bold: bool) -> str:
        text = f"{self.p50_ms:.3f}" + (f" ±{self.spread / 2:.0%}" if self.spread else "")
        return f"**{text}**" if bold else text


def p50_grid(folders: dict[str, list[SweepRow]]) -> dict[Shape, dict[str, Cell]]:
    """(model, batch, seq) -> {label: cell} over the in-process rows of each labelled folder."""
    grid: dict[Shape, dict[str, Cell]] = {}
    for label, points in folders.items():
        for p in points:
            if p.mode == "inproc" and p.p50_ms:
                grid.setdefault((p.model, p.batch, p.seq), {})[label] = Cell.of(p)
    return grid


def fastest(cells: dict[str, Cell]) -> str | None:
    """The label faster than every other beyond the spreads, or None (a tie within the noise)."""
    if len(cells) < 2:
        return None
    best = min(cells, key=lambda lb: cells[lb].p50_ms)
    clear = all(cells[best].hi_ms < c.lo_ms for lb, c in cells.items() if lb != best)
    return best if clear else None


def wins(grid: dict[Shape, dict[str, Cell]]) -> dict[str, dict[str, int]]:
    """model -> {label: shapes where it is fastest beyond the spread, "within the spread": ties},
    over shapes measured by more than one label."""
    out: dict[str, Counter[str]] = {}
    for (model, _, _), cells in grid.items():
        if len(cells) > 1:
            out.setdefault(model, Counter())[fastest(cells) or TIE] += 1
    return {m: dict(c.most_common()) for m, c in out.items()}


TIE = "none beyond the spread"


def table_md(folders: dict[str, list[SweepRow]]) -> list[str]:
    """Markdown: one line per model and shape, one p50 column per label (± half the spread of its
    block p50s), the fastest in bold where it is faster beyond the spread, then per model which
    label is fastest at how many shapes. Empty without two labels to compare."""
    grid = p50_grid(folders)
    labels = [lb for lb in folders if any(lb in cells for cells in grid.values())]
    if len(labels) < 2:
        return []
    lines = ["| model | batch x seq | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 2)]
    for (model, b, q), cells in sorted(grid.items()):
        best = fastest(cells)
        row = ["–" if lb not in cells else cells[lb].md(lb == best) for lb in labels]
        lines.append(f"| {model} | {b} x {q} | " + " | ".join(row) + " |")
    lines.append("")
    for model, counts in sorted(wins(grid).items()):
        lines.append(f"- {model}: {wins_sentence(counts)}.")
    return lines


def wins_sentence(counts: dict[str, int]) -> str:
    """'fastest served at 3, torch at 1 of 6 shapes; none beyond the spread at 2'."""
    ties = counts.get(TIE, 0)
    said = ", ".join(f"{lb} at {n}" for lb, n in counts.items() if lb != TIE) or "no way"
    return f"fastest {said} of {sum(counts.values())} shapes" + (f"; {TIE} at {ties}" if ties else "")
