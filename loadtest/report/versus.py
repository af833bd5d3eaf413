"""Which way of running each model is fastest: p50 per model and shape across every in-process
result folder of a report (ONNX Runtime variants old and new, the PyTorch reference), pure over
their rows so it is tested on CPU-made results."""

from __future__ import annotations

from collections import Counter

from loadtest.results import SweepRow

Shape = tuple[str, int, int]  # model, batch, seq


def p50_grid(folders: dict[str, list[SweepRow]]) -> dict[Shape, dict[str, float]]:
    """(model, batch, seq) -> {label: p50 ms} over the in-process rows of each labelled folder."""
    grid: dict[Shape, dict[str, float]] = {}
    for label, points in folders.items():
        for p in points:
            if p.mode == "inproc" and p.p50_ms:
                grid.setdefault((p.model, p.batch, p.seq), {})[label] = p.p50_ms
    return grid


def wins(grid: dict[Shape, dict[str, float]]) -> dict[str, dict[str, int]]:
    """model -> {label: shapes where it is fastest}, only shapes measured by more than one label."""
    out: dict[str, Counter[str]] = {}
    for (model, _, _), cells in grid.items():
        if len(cells) > 1:
            out.setdefault(model, Counter())[min(cells, key=cells.__getitem__)] += 1
    return {m: dict(c.most_common()) for m, c in out.items()}


def table_md(folders: dict[str, list[SweepRow]]) -> list[str]:
    """Markdown: one line per model and shape, one p50 column per label, the fastest in bold, then
    per model which label is fastest at how many shapes. Empty without two labels to compare."""
    grid = p50_grid(folders)
    labels = [lb for lb in folders if any(lb in cells for cells in grid.values())]
    if len(labels) < 2:
        return []
    lines = ["| model | batch x seq | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 2)]
    for (model, b, q), cells in sorted(grid.items()):
        best = min(cells.values())
        row = [
            (
                "–"
                if lb not in cells
                else (f"**{cells[lb]:.3f}**" if cells[lb] == best else f"{cells[lb]:.3f}")
            )
            for lb in labels
        ]
        lines.append(f"| {model} | {b} x {q} | " + " | ".join(row) + " |")
    lines.append("")
    for model, counts in sorted(wins(grid).items()):
        said = ", ".join(f"{lb} at {n}" for lb, n in counts.items())
        lines.append(f"- {model}: fastest {said} of {sum(counts.values())} shapes.")
    return lines
