"""Where the SHA/MHA cost ratio goes as tokens per batch grow, per way of running the pair: the
ratio at every measured shape against batch x seq, a fit of ratio = asymptote + c / tokens over
the larger half of the shapes, and the crossover it implies (or that it does not reach 1).

    python -m loadtest.gpu.crossover RESULTS_DIR... [--out DIR] [--machine "2-core AMD EPYC"]

The paper's claim is that SHA gets cheaper than MHA once batch and sequence grow. On hardware
where the per-layer cost (launches, small kernels, framework) dominates at small batches, the
ratio falls with tokens per batch; the fit says where it levels off. crossover.png and
crossover.md are written to --out; the GPU report uses the same functions on its own folders.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402
from pydantic import Field  # noqa: E402
from pydantic_settings import BaseSettings, SettingsConfigDict  # noqa: E402

from contract import results  # noqa: E402
from contract.atomic import write_bytes, write_text  # noqa: E402
from contract.cli import OneLineArgumentParser, fail, settings_flags, settings_from  # noqa: E402
from contract.results import SweepRow  # noqa: E402
from loadtest.report import analysis  # noqa: E402

PNG_NAME, MD_NAME = "crossover.png", "crossover.md"


@dataclass(frozen=True)
class RatioPoint:
    batch: int
    seq: int
    ratio: float  # SHA p50 / MHA p50

    @property
    def tokens(self) -> int:
        return self.batch * self.seq


@dataclass(frozen=True)
class Fit:
    """ratio = asymptote + c / tokens over the `points` largest shapes."""

    asymptote: float
    c: float
    points: int
    from_tokens: int

    @property
    def crossover_tokens(self) -> float | None:
        """Tokens per batch where the fitted ratio reaches 1 (None: it levels off above 1)."""
        if self.asymptote >= 1 or self.c <= 0:
            return None
        return self.c / (1 - self.asymptote)


@dataclass(frozen=True)
class Series:
    label: str
    points: list[RatioPoint]  # ordered by tokens per batch, then seq

    @property
    def fit(self) -> Fit | None:
        return fit(self.points)


def series(label: str, rows: list[SweepRow]) -> Series | None:
    """The pair's ratio per shape from one folder's rows (None without an MHA/SHA pair)."""
    g = analysis.ratio_grid(rows)
    if g is None:
        return None
    pts = sorted((RatioPoint(b, q, r) for (b, q), r in g.ratio.items()), key=lambda p: (p.tokens, p.seq))
    return Series(label, pts)


def fit(points: list[RatioPoint], least: int = 3) -> Fit | None:
    """Least squares of ratio = a + c / tokens over the larger half of the shapes by tokens (at
    least `least` of them): the small shapes are launch-bound and follow another curve."""
    if len(points) < least:
        return None
    top = sorted(points, key=lambda p: p.tokens)[-max(least, len(points) // 2) :]
    t = np.array([p.tokens for p in top], dtype=float)
    if len(set(t)) < 2:
        return None
    a_mat = np.column_stack([np.ones_like(t), 1 / t])
    (a, c), *_ = np.linalg.lstsq(a_mat, np.array([p.ratio for p in top]), rcond=None)
    return Fit(float(a), float(c), len(top), int(t.min()))


def sentence(s: Series) -> str:
    """Where the ratio goes for one way of running the pair, in one sentence."""
    lo, hi = s.points[0], s.points[-1]
    cheaper = [p for p in s.points if p.ratio < 1]
    said = (
        f"{s.label}: SHA/MHA {lo.ratio:.2f} at {lo.tokens:,} tokens per batch (batch {lo.batch} x seq {lo.seq}) "
        f"to {hi.ratio:.2f} at {hi.tokens:,} (batch {hi.batch} x seq {hi.seq})"
    )
    if cheaper:
        first = min(cheaper, key=lambda p: p.tokens)
        said += (
            f"; SHA is cheaper from {first.tokens:,} tokens per batch (batch {first.batch} x seq {first.seq})"
        )
    f = s.fit
    if f is None:
        return said + "."
    top = sorted(s.points, key=lambda p: p.tokens)[-f.points :]
    lo_r, hi_r = min(p.ratio for p in top), max(p.ratio for p in top)
    if f.c <= 0 or f.asymptote > lo_r:  # not falling towards a level, or the fit misses the points
        return said + (
            f"; over the {f.points} largest shapes (from {f.from_tokens:,} tokens) it does not fall along "
            f"ratio = a + c / tokens but scatters between {lo_r:.2f} and {hi_r:.2f}"
            + (", all above 1." if lo_r >= 1 else ".")
        )
    at = f.crossover_tokens
    tail = (
        f"levels off at {f.asymptote:.2f}, so no crossover is in sight"
        if at is None
        else f"reaches 1 at about {at:,.0f} tokens per batch"
    )
    return (
        said
        + f"; fitted over the {f.points} largest shapes (from {f.from_tokens:,} tokens) the ratio {tail}."
    )


def _median_line(points: list[RatioPoint]) -> tuple[list[int], list[float]]:
    tokens = sorted({p.tokens for p in points})
    return tokens, [float(np.median([p.ratio for p in points if p.tokens == t])) for t in tokens]


def plot(all_series: list[Series], out: Path, title: str) -> Path | None:
    """SHA/MHA against tokens per batch, one line per way of running the pair, 1.0 marked."""
    if not all_series:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for s in all_series:  # every shape a dot; the line through the median ratio per tokens per batch
        (line,) = ax.plot(*_median_line(s.points), "-", lw=1, label=s.label)
        ax.plot([p.tokens for p in s.points], [p.ratio for p in s.points], "o", ms=3, color=line.get_color())
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set(xscale="log", yscale="log", xlabel="tokens per batch (batch x seq)", ylabel="SHA p50 / MHA p50")
    ax.set_title(title, fontsize=9)
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(out, buf.getvalue())
    return out


def label_of(rows: list[SweepRow], default: str) -> str:
    """A folder's runtime label from its rows: variant, CUDA graphs, provider (or `default`)."""
    variants = sorted({p.variant for p in rows if p.variant})
    if not variants:
        return default
    graphs = " + CUDA graphs" if any("CUDA graph" in (p.note or "") for p in rows) else ""
    provs = sorted({(p.provider or "").removesuffix("ExecutionProvider") for p in rows} - {""})
    return f"{', '.join(variants)}{graphs}" + (f" ({', '.join(provs)})" if provs else "")


class CrossoverSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_CROSSOVER_", extra="ignore")

    out: Path = Field(default=Path("results/crossover"), description=f"folder for {PNG_NAME} and {MD_NAME}")
    machine: str = Field(default="", description="the machine the results come from, named in the page")


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(prog="loadtest.gpu.crossover", description=__doc__.splitlines()[0])
    p.add_argument(
        "folders",
        nargs="+",
        help="results folders (results.json with an MHA/SHA pair; folders of one label join)",
    )
    settings_flags(p, CrossoverSettings)
    args = p.parse_args(argv)
    s = settings_from(CrossoverSettings, args, ("folders",))
    by_label: dict[str, list[SweepRow]] = {}  # folders of one way of running the pair join
    for folder in map(Path, args.folders):
        if not (folder / results.JSON_NAME).is_file():
            fail(f"{folder} has no {results.JSON_NAME}")
        rows = results.load(folder).points
        by_label.setdefault(label_of(rows, folder.name), []).extend(rows)
    found = [x for label, rows in by_label.items() if (x := series(label, rows))]
    if not found:
        fail("no folder has an MHA/SHA pair measured at the same shapes")
    png = plot(
        found, s.out / PNG_NAME, f"SHA/MHA vs tokens per batch{' — ' + s.machine if s.machine else ''}"
    )
    lines = [f"# SHA/MHA against tokens per batch{' (' + s.machine + ')' if s.machine else ''}", ""]
    lines += [f"![SHA/MHA vs tokens per batch]({png.name})", ""] if png else []
    lines += [f"- {sentence(x)}" for x in found]
    write_text(s.out / MD_NAME, "\n".join(lines) + "\n")
    print("\n".join(sentence(x) for x in found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
