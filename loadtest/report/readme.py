"""README's Results table, generated from the committed result files.

    python -m loadtest.report.readme [--check] [--readme README.md]      (make readme)

Writes the table between README's `<!-- results -->` markers; `--check` changes nothing and exits
1 when README's table differs from what the files say (tests/loadtest/test_readme_results.py
runs it). Every figure is read here from its file: the seeded accuracy records
(docs/accuracy.json), sweep and capacity results (contract.results), the overhead benchmark's
JSON, and the GPU rounds under docs/gpu/, the newest round of each card (by its results.json
`created`). A result file does not carry the commit it was recorded at, so each source's machine
and commit are stated once, where the source is named below.
"""

from __future__ import annotations

import difflib
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract import accuracy, results
from contract.atomic import write_text
from contract.cli import settings_from, settings_parser
from contract.results import CapacityRow, SweepRow

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BEGIN, END = "<!-- results -->", "<!-- /results -->"
HEADER = [
    "| what | MHA | SHA | SHA vs MHA | machine, commit | details |",
    "|---|---|---|---|---|---|",
]
# The commit each GPU round ran at (its results.json names the card and the time, not the commit).
GPU_COMMITS = {"nvidia-h100-80gb-hbm3": "146967d", "nvidia-h200/report": "bccb7f0"}
GPU_SHORT = {"NVIDIA H100 80GB HBM3": "H100", "NVIDIA H200": "H200"}


@dataclass(frozen=True)
class Row:
    what: str
    mha: str
    sha: str
    ratio: str
    where: str
    details: str

    def md(self) -> str:
        return f"| {self.what} | {self.mha} | {self.sha} | {self.ratio} | {self.where} | {self.details} |"


def _minus(text: str) -> str:
    """Signed figures with a typographic minus, as the README writes them."""
    return text.replace("-", "−")


def _ms(v: float) -> str:
    return f"{v:.3g}" if v < 100 else f"{v:,.0f}"


def _x(v: float) -> str:
    return f"{v:.2f}x"


def _pair(rows: list[SweepRow], batch: int, seq: int) -> tuple[float, float]:
    """MHA's and SHA's p50 (ms) at one shape of one result file."""
    at = {r.arch: r.p50_ms for r in rows if (r.batch, r.seq) == (batch, seq) and r.mode == "inproc"}
    return float(at["mha"]), float(at["sha"])


def accuracy_rows() -> list[Row]:
    """The seeded study: test accuracy at each architecture's chosen budget, and its training time."""
    claim = accuracy.study_claim(accuracy.load_records(DOCS / "accuracy.json"))
    if claim is None:
        return []
    mha, sha, iv = claim.mha, claim.sha, claim.interval
    budget = (
        f"{mha.epochs} epochs both" if mha.epochs == sha.epochs else f"{mha.epochs} and {sha.epochs} epochs"
    )
    seeds = f"{len(mha.runs)} and {len(sha.runs)} seeds"
    gap = f"{100 * claim.diff:+.2f} points" + (
        f", 95% CI [{100 * iv.low:+.2f}, {100 * iv.high:+.2f}]" if iv else ""
    )
    # training seconds per epoch as docs/accuracy.md counts them (the least-loaded run's median
    # epoch: a shared machine only slows epochs down), times the budget
    times = [(accuracy.epoch_seconds(side.runs) or 0.0) * side.epochs for side in (mha, sha)]
    where, link = "CPU box, 52bd5b2-4eb2bf1", "[accuracy](docs/accuracy.md)"
    return [
        Row(
            f"test accuracy, small pair, WordNet supersenses, each at the budget validation picks ({budget}; {seeds})",
            *(f"{m:.4f} ± {sd:.4f}" for m, sd in (accuracy.mean_std(s.test) for s in (mha, sha))),
            _minus(gap),
            where,
            link,
        ),
        Row(
            f"training time for those {mha.epochs} epochs" if mha.epochs == sha.epochs else "training time",
            f"{times[0]:.0f} s",
            f"{times[1]:.0f} s",
            _x(times[1] / times[0]),
            "CPU box, 52bd5b2",
            link,
        ),
    ]


def _two_shapes(
    what: str, path: Path, shapes: tuple[tuple[int, int], tuple[int, int]], where: str, link: str
) -> Row:
    """A row of MHA and SHA p50 at two shapes ("a / b ms") and SHA/MHA at each."""
    rows = results.load(path).points if path.suffix != ".csv" else results.read_csv(path)
    (m1, s1), (m2, s2) = (_pair(rows, *shape) for shape in shapes)
    return Row(
        what,
        f"{_ms(m1)} / {_ms(m2)} ms",
        f"{_ms(s1)} / {_ms(s2)} ms",
        f"{_x(s1 / m1)} / {_x(s2 / m2)}",
        where,
        link,
    )


def sweep_rows() -> list[Row]:
    """The training step, the small pair's and the base pair's in-process p50 on the CPU box."""
    base = results.read_csv(DOCS / "paper-cpu" / "results.csv")
    m, s = _pair(base, 1, 16)
    last = max((r.batch, r.seq) for r in base)
    lm, ls = _pair(base, *last)
    return [
        _two_shapes(
            "training step (forward, backward, AdamW), small pair, batch 1 x seq 16 / batch 64 x seq 64, CPU seconds",
            DOCS / "train-cost" / "epyc-2026-12-04" / "train-eager",
            ((1, 16), (64, 64)),
            "CPU box, 18fc2ef",
            "[training cost](docs/benchmarks.md#training-step-cost-small-pair-cpu-box)",
        ),
        _two_shapes(
            "in-process p50, small pair, batch 1 x seq 16 / batch 32 x seq 64",
            DOCS / "loadtest-example" / "results.csv",
            ((1, 16), (32, 64)),
            "CPU box, 63f5c60",
            "[benchmarks](docs/benchmarks.md#serving-cost-small-pair-cpu-box)",
        ),
        Row(
            "in-process p50, base pair, batch 1 x seq 16",
            f"{_ms(m)} ms",
            f"{_ms(s)} ms",
            f"{_x(s / m)} ({_x(ls / lm)} at batch {last[0]} x seq {last[1]})",
            "CPU box, 63f5c60",
            "[benchmarks](docs/benchmarks.md#the-papers-pair-bert-base-size-cpu-box)",
        ),
    ]


def _span(values: list[float]) -> str:
    lo, hi = f"{min(values):.2f}", f"{max(values):.2f}"
    return f"{lo} ms" if lo == hi else f"{lo}-{hi} ms"


def overhead_rows() -> list[Row]:
    """What the service adds at batch 1 in the default shape on the CPU box (one process: two
    rounds per model), then the engine process with one front against it (c=1 and c=32)."""
    runs = {
        m: json.loads((DOCS / "overhead" / "epyc-2026-12-07" / f"{m}.json").read_text())
        for m in ("mha", "sha")
    }

    def c1(d: dict, label: str) -> list[float]:
        return [r["c1"]["p50_ms"] - d["inproc_p50_ms"] for r in d["raw"][label]]

    def split(d: dict) -> str:
        c32 = [statistics.median(r["c32"]["rps"] for r in d["raw"][k]) for k in ("W=1", "single")]
        return f"{_span(c1(d, 'W=1'))} / {_x(c32[0] / c32[1])}"

    link = "[serving overhead](docs/benchmarks.md#the-seam-in-one-module-and-the-process-shape-cpu-box)"
    return [
        Row(
            "what the service adds at batch 1 (HTTP p50 − in-process p50), the default on this 2-core box "
            "(one process), two rounds",
            _span(c1(runs["mha"], "single")),
            _span(c1(runs["sha"], "single")),
            "",
            "CPU box, fa376de",
            link,
        ),
        Row(
            "the same with the engine process and one front (`--fronts 1`), c=1 / batch-1 req/s at c=32 vs one "
            "process (medians of two rounds)",
            split(runs["mha"]),
            split(runs["sha"]),
            "",
            "CPU box, fa376de",
            link,
        ),
    ]


def gpu_rounds(docs: Path = DOCS) -> dict[str, Path]:
    """The newest GPU round of each card under docs/gpu/ (a results.json with a `gpu` and `steps`)."""
    newest: dict[str, tuple[str, Path]] = {}
    for path in sorted(docs.glob("gpu/**/results.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(data, dict) and "gpu" in data and "steps" in data):
            continue
        card, created = data["gpu"]["name"], data["created"]
        if card not in newest or created > newest[card][0]:
            newest[card] = (created, path.parent)
    return {card: folder for card, (_, folder) in sorted(newest.items())}


def _capacity(folder: Path, batch: int, seq: int) -> tuple[float, float]:
    data = results.load_capacity(folder / "http")
    rows: list[CapacityRow] = data.rows if data else []
    at = {r.arch or r.model[:3]: r.capacity_rps or 0.0 for r in rows if (r.batch, r.seq) == (batch, seq)}
    return float(at["mha"]), float(at["sha"])


def gpu_rows() -> list[Row]:
    """Per card, its newest round: fp32 in-process p50 at batch 1 x seq 32 (and SHA/MHA at the
    largest shape), and requests/s within p99 <= 50 ms at batch 1 x seq 32."""
    out = []
    for card, folder in gpu_rounds().items():
        name = str(folder.relative_to(DOCS / "gpu"))
        where, link = (
            f"{GPU_SHORT.get(card, card)}, {GPU_COMMITS.get(name, '?')}",
            f"[GPU report](docs/gpu/{name}/report.md)",
        )
        fp32 = results.load(folder / "inproc-fp32").points
        m, s = _pair(fp32, 1, 32)
        last = max((r.batch, r.seq) for r in fp32)
        lm, ls = _pair(fp32, *last)
        ratio = f"{_x(s / m)} ({_x(ls / lm)} at batch {last[0]} x seq {last[1]})"
        out.append(
            Row(
                "in-process p50, base pair, fp32, batch 1 x seq 32",
                f"{_ms(m)} ms",
                f"{_ms(s)} ms",
                ratio,
                where,
                link,
            )
        )
        cm, cs = _capacity(folder, 1, 32)
        said = "SHA never meets the SLO" if cs == 0 else _x(cs / cm)
        what = "requests/s within p99 ≤ 50 ms, base pair, fp16, batch 1 x seq 32"
        out.append(Row(what, f"{cm:,.0f}", f"{cs:,.0f}", said, where, link))
    return out


def cuda_graph_row() -> Row:
    """HTTP p50 of the small pair at batch 1 on the H100, CUDA graphs off and on (run 3)."""
    folder = DOCS / "gpu" / "nvidia-h100-80gb-hbm3" / "serving" / "round3"
    p50 = {
        (m, g): json.loads((folder / f"overhead-{m}-graph-{g}.json").read_text())["service"]["c1"]["p50_ms"]
        for m in ("mha", "sha")
        for g in ("false", "true")
    }
    cell = {m: f"{p50[m, 'false']:.2f} / {p50[m, 'true']:.2f} ms" for m in ("mha", "sha")}
    ratio = " / ".join(_x(p50["sha", g] / p50["mha", g]) for g in ("false", "true"))
    link = "[GPU serving](docs/benchmarks.md#serving-through-cuda-graphs-h100)"
    return Row(
        "HTTP p50, small pair, batch 1, plain / CUDA graphs",
        cell["mha"],
        cell["sha"],
        ratio,
        "H100, 6e108eb",
        link,
    )


SECTIONS: list[Callable[[], list[Row]]] = [
    accuracy_rows,
    sweep_rows,
    overhead_rows,
    gpu_rows,
    lambda: [cuda_graph_row()],
]


def table() -> str:
    """The Results table as the files say it, one line per row."""
    return "\n".join([*HEADER, *(r.md() for section in SECTIONS for r in section())])


def with_table(readme: str, body: str) -> str:
    """`readme` with the text between the markers replaced by `body`."""
    head, sep, rest = readme.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise ValueError(f"README has no {BEGIN} ... {END} block")
    return f"{head}{BEGIN}\n{body}\n{END}{tail}"


class ReadmeSettings(BaseSettings):
    """The generator's options (each also from H2H_README_<FLAG>)."""

    model_config = SettingsConfigDict(env_prefix="H2H_README_", extra="forbid")

    readme: Path = Field(default=ROOT / "README.md", description="the README whose Results table to write")
    check: bool = Field(
        default=False, description="change nothing; exit 1 when the table differs from the files"
    )


def main(argv: list[str] | None = None) -> int:
    s = settings_from(
        ReadmeSettings,
        settings_parser(ReadmeSettings, "loadtest.report.readme", __doc__.splitlines()[0]).parse_args(argv),
    )
    old = s.readme.read_text(encoding="utf-8")
    new = with_table(old, table())
    if s.check:
        diff = list(
            difflib.unified_diff(
                old.splitlines(), new.splitlines(), "README.md", "from the files", lineterm=""
            )
        )
        print("\n".join(diff) or f"{s.readme}: the Results table matches the files", file=sys.stderr)
        return 1 if diff else 0
    if new != old:
        write_text(s.readme, new)
    print(f"wrote {s.readme}'s Results table", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
