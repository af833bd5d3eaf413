"""The GPU report's summary: one page over the result folders the round wrote (in-process sweeps
per way of running the models, the kernel profile, the peak probe, the HTTP sweeps with their
capacity searches), the facts of the device, and the block appended to docs/benchmarks.md.

Pure over the folders' JSON files, so it is tested on CPU-made results. Each folder is read once
into typed facts (`FolderFacts`, `HttpFacts`, `Summary`); the page is written from those.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contract import results
from contract.results import CapacityRatio, CapacityRow, SweepRow
from loadtest.gpu import crossover, kernel_page, throughput, versus
from loadtest.gpu.plan import PEAK_JSON
from loadtest.profile import runner as profile_runner
from loadtest.report import analysis
from loadtest.report.decide import decide
from loadtest.report.markdown import verdict

GOAL_SHAPE = (64, 128)  # batch x seq of the throughput goal


def slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (a folder name under docs/gpu/)."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return s or "unknown-gpu"


@dataclass(frozen=True)
class CrossoverFacts:
    """The SHA/MHA ratio over one folder's grid."""

    sha_cheaper_at: list[tuple[int, int]]
    shapes: int
    best_ratio: float
    best_at: tuple[int, int]
    worst_ratio: float
    worst_at: tuple[int, int]
    from_batch_per_seq: dict[int, int | None]
    ratios: dict[tuple[int, int], float]

    @classmethod
    def of(cls, points: list[SweepRow]) -> CrossoverFacts | None:
        g = analysis.ratio_grid(points)
        if g is None:
            return None
        c = analysis.crossover(g)
        return cls(c.cheaper, c.total, c.best[1], c.best[0], c.worst[1], c.worst[0], c.per_seq, g.ratio)

    def as_json(self) -> dict[str, Any]:
        return {
            "sha_cheaper_at": [list(k) for k in self.sha_cheaper_at],
            "shapes": self.shapes,
            "best_ratio": self.best_ratio,
            "best_at": list(self.best_at),
            "worst_ratio": self.worst_ratio,
            "worst_at": list(self.worst_at),
            "from_batch_per_seq": {str(q): b for q, b in self.from_batch_per_seq.items()},
            "ratios": {f"b{b}_s{q}": r for (b, q), r in self.ratios.items()},
        }


@dataclass(frozen=True)
class FolderFacts:
    """One in-process result folder: its label, rows, verdict and crossover."""

    folder: str
    label: str
    rows: list[SweepRow]
    manifests: dict[str, Any]
    verdict: str
    crossover: CrossoverFacts | None
    providers: list[str]

    def as_json(self) -> dict[str, Any]:
        x = self.crossover.as_json() if self.crossover else None
        return {"variant": self.label, "verdict": self.verdict, "crossover": x, "providers": self.providers}


@dataclass(frozen=True)
class ComputeUnderLoad:
    """The engine's compute per batch for one model and shape: alone (lowest concurrency) and under
    load (highest), from the HTTP sweep's server-side timings."""

    model: str
    batch: int
    seq: int
    idle_ms: float
    load_ms: float
    concurrency: int
    load_rows: float  # rows per engine batch under load (requests batched together)

    @classmethod
    def of(cls, rows: list[SweepRow]) -> list[ComputeUnderLoad]:
        by: dict[tuple[str, int, int], list[SweepRow]] = {}
        for r in rows:
            if r.load == "closed" and r.server_compute_ms is not None:
                by.setdefault((r.model, r.batch, r.seq), []).append(r)
        out = []
        for (m, b, q), rs in sorted(by.items()):
            lo, hi = min(rs, key=lambda r: r.concurrency), max(rs, key=lambda r: r.concurrency)
            if hi.concurrency > lo.concurrency:
                idle, busy = lo.server_compute_ms or 0.0, hi.server_compute_ms or 0.0
                out.append(cls(m, b, q, idle, busy, hi.concurrency, hi.server_rows_per_batch or float(b)))
        return out


@dataclass(frozen=True)
class HttpFacts:
    """One HTTP folder: the sweep's verdict, the capacity rows and the recommendation."""

    folder: str
    verdict: str | None = None
    recommendation: str | None = None
    capacity: list[CapacityRow] = field(default_factory=list)
    capacity_ratios: list[CapacityRatio] = field(default_factory=list)
    slo_p99_ms: float | None = None
    compute: list[ComputeUnderLoad] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        keep = {"model", "batch", "seq", "capacity_rps", "p99_ms", "status"}
        return {
            "verdict": self.verdict,
            "recommendation": self.recommendation,
            "capacity": [r.model_dump(include=keep) for r in self.capacity],
            "capacity_ratios": [x.model_dump() for x in self.capacity_ratios],
            "slo_p99_ms": self.slo_p99_ms,
            "compute_idle_vs_load": [asdict(c) for c in self.compute],
        }


@dataclass
class Summary:
    inproc: dict[str, FolderFacts]
    http: dict[str, HttpFacts]
    peak: dict[str, float] = field(default_factory=dict)
    profile: dict[str, Any] | None = None
    kernels: dict[str, Any] | None = None

    def by_label(self, folders: tuple[str, ...] | None = None) -> dict[str, list[SweepRow]]:
        """Rows per label (folders of one label, such as a sweep and its crossover extension, joined)."""
        out: dict[str, list[SweepRow]] = {}
        for f in self.inproc.values():
            if folders is None or f.folder in folders:
                out.setdefault(f.label, []).extend(f.rows)
        return out

    @property
    def manifests(self) -> dict[str, Any]:
        return {k: v for f in self.inproc.values() for k, v in f.manifests.items()}

    @property
    def training(self) -> list[FolderFacts]:
        """The training step's cost folders (models.train_cost)."""
        return [f for f in self.inproc.values() if f.folder.startswith("train-cost/")]

    def paper_grid(self) -> dict[str, list[SweepRow]]:
        """The pair of the paper grid (the small pair and the crossover extension left out)."""
        return self.by_label(tuple(f for f in self.inproc if f.startswith(("inproc-", "torch-"))))

    def series(self) -> list[crossover.Series]:
        """SHA/MHA against tokens per batch per label, the crossover extension included."""
        keep = tuple(f for f in self.inproc if not f.startswith(("small-", "train-cost/")))
        return [s for lb, rows in self.by_label(keep).items() if (s := crossover.series(lb, rows))]

    def rates(self) -> list[throughput.Rate]:
        return throughput.best_rates(self.paper_grid(), self.manifests, self.peak)

    def goal_rates(self) -> list[throughput.Rate]:
        return throughput.at_shape(self.paper_grid(), self.manifests, self.peak, *GOAL_SHAPE)

    def as_json(self) -> dict[str, Any]:
        grid = versus.p50_grid(self.paper_grid())
        return {
            "inproc": {k: f.as_json() for k, f in self.inproc.items()},
            "http": {k: h.as_json() for k, h in self.http.items()},
            "fastest": versus.wins(grid),
            "crossover_by_tokens": [crossover.sentence(s) for s in self.series()],
            "peak_tflops": self.peak,
            "throughput": [asdict(r) | {"share": r.share} for r in self.rates()],
            "profile": _profile_facts(self.profile),
            "kernels": self.kernels["rows"] if self.kernels else None,
        }


def _folder(path: Path) -> tuple[list[SweepRow], results.ResultMeta] | None:
    if not (path / results.JSON_NAME).is_file():
        return None
    data = results.load(path)
    return data.points, data.meta


# the in-process folder whose model cost the verdict weighs beside an HTTP folder's capacity
COST_FOLDER = {"small-http": "small-served"}


def _http(out: Path, folder: str) -> HttpFacts | None:
    got = _folder(out / folder)
    cap = results.load_capacity(out / folder) if (out / folder).is_dir() else None
    if got is None and not (cap and cap.rows):
        return None
    said = verdict(got[0]) if got else None
    compute = ComputeUnderLoad.of(got[0]) if got else []
    if not (cap and cap.rows):
        return HttpFacts(folder, said, compute=compute)
    rows = cap.rows
    cost = _folder(out / COST_FOLDER[folder]) if folder in COST_FOLDER else None
    said_cap = decide(cap, [*(got[0] if got else []), *(cost[0] if cost else [])], cap.meta.manifests)
    recommendation = said_cap.sentence if said_cap else None
    return HttpFacts(folder, said, recommendation, list(rows), list(cap.ratios), rows[0].slo_p99_ms, compute)


def _peak(out: Path) -> dict[str, float]:
    try:
        return dict(json.loads((out / "peak" / PEAK_JSON).read_text(encoding="utf-8"))["tflops"])
    except (OSError, ValueError, KeyError):
        return {}


def collect(out: Path, labels: dict[str, str]) -> Summary:
    """Facts per result folder under `out`: `labels` maps folder name -> the label of its rows."""
    inproc = {}
    for folder, label in labels.items():
        got = _folder(out / folder)
        if got is not None:
            points, meta = got
            provs = sorted({p.provider for p in points if p.provider})
            facts = FolderFacts(
                folder,
                label,
                points,
                meta.manifests,
                verdict(points),
                CrossoverFacts.of(points),
                provs,
            )
            inproc[folder] = facts
    http = {f: h for f in ("http", "small-http") if (h := _http(out, f))}
    return Summary(
        inproc, http, _peak(out), profile_runner.load(out / "profile"), kernel_page.load(out / "kernels")
    )


def _profile_facts(prof: dict[str, Any] | None) -> dict[str, Any] | None:
    """The profile's per-row figures and SHA/MHA ratios for results.json (None without a profile)."""
    if prof is None:
        return None
    keep = (
        "model",
        "variant",
        "provider",
        "nodes_per_run",
        "kernels_per_run",
        "wall_ms",
        "run_ms",
        "node_ms",
        "gap_ms",
    )
    rows = [
        {**{k: r.get(k) for k in keep}, "class_ms": {c: v["ms"] for c, v in r["classes"].items()}}
        for r in prof["rows"]
    ]
    return {"spec": prof["spec"], "rows": rows, "ratios": prof["ratios"]}


def ratio_table(points: list[SweepRow]) -> list[str]:
    """Markdown: SHA/MHA p50 ratio per (seq, batch); bold below 1 (SHA cheaper)."""
    g = analysis.ratio_grid(points)
    if g is None:
        return []
    head = "| SHA/MHA p50 | " + " | ".join(f"batch {b}" for b in g.batches) + " |"
    lines = [head, "|" + "---|" * (len(g.batches) + 1)]
    for q in g.seqs:
        cells = []
        for b in g.batches:
            r = g.ratio.get((b, q))
            cells.append("–" if r is None else (f"**{r:.2f}**" if r < 1 else f"{r:.2f}"))
        lines.append(f"| seq {q} | " + " | ".join(cells) + " |")
    return lines


def crossover_sentence(label: str, facts: CrossoverFacts | None) -> str:
    if facts is None:
        return f"{label}: no MHA/SHA pair measured."
    n, total = len(facts.sha_cheaper_at), facts.shapes
    (bb, bq), best = facts.best_at, facts.best_ratio
    if n == 0:
        return (
            f"{label}: no crossover — MHA is cheaper at all {total} shapes; SHA's best is {best:.2f}x MHA "
            f"(batch {bb} x seq {bq})."
        )
    starts = [f"seq {q} from batch {b}" for q, b in facts.from_batch_per_seq.items() if b is not None]
    return (
        f"{label}: the crossover appears — SHA is cheaper at {n} of {total} shapes "
        f"({'; '.join(starts) or 'not contiguously'}), down to {best:.2f}x MHA at batch {bb} x seq {bq}."
    )
