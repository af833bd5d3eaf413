"""Pure helpers over result rows: latency grids, the SHA/MHA ratio, the crossover, overhead."""

from __future__ import annotations

from dataclasses import dataclass

from contract.results import SweepRow


def latency_rows(points: list[SweepRow]) -> tuple[str, list[SweepRow]]:
    """The rows that measure model cost per shape: in-process if present, else HTTP at concurrency 1."""
    inproc = [p for p in points if p.mode == "inproc" and p.p50_ms is not None]
    if inproc:
        return "in-process", inproc
    return "HTTP, concurrency 1", [p for p in points if is_lone(p) and p.p50_ms is not None]


def is_lone(p: SweepRow) -> bool:
    """An HTTP point of lone requests: a closed loop at concurrency 1."""
    return p.load == "closed" and p.concurrency == 1


def pair(points: list[SweepRow]) -> tuple[str | None, str | None]:
    """The MHA and SHA model names to compare (the first of each arch, in result order)."""
    mha = next((p.model for p in points if p.arch == "mha"), None)
    sha = next((p.model for p in points if p.arch == "sha"), None)
    return mha, sha


@dataclass
class RatioGrid:
    source: str
    mha: str
    sha: str
    batches: list[int]
    seqs: list[int]
    ratio: dict[tuple[int, int], float]  # (batch, seq) -> SHA p50 / MHA p50
    mha_ms: dict[tuple[int, int], float]
    sha_ms: dict[tuple[int, int], float]


def ratio_grid(points: list[SweepRow]) -> RatioGrid | None:
    source, rows = latency_rows(points)
    mha, sha = pair(rows)
    if not mha or not sha:
        return None
    lat = {(r.model, r.batch, r.seq): float(r.p50_ms or 0.0) for r in rows}
    keys = sorted({(b, q) for (m, b, q) in lat if m == mha} & {(b, q) for (m, b, q) in lat if m == sha})
    if not keys:
        return None
    ratio = {k: lat[(sha, *k)] / lat[(mha, *k)] for k in keys}
    return RatioGrid(
        source,
        mha,
        sha,
        sorted({b for b, _ in keys}),
        sorted({q for _, q in keys}),
        ratio,
        {k: lat[(mha, *k)] for k in keys},
        {k: lat[(sha, *k)] for k in keys},
    )


@dataclass
class Crossover:
    cheaper: list[tuple[int, int]]  # (batch, seq) where SHA is cheaper (ratio < 1)
    total: int
    per_seq: dict[int, int | None]  # seq -> smallest batch from which SHA stays cheaper (None: never)
    best: tuple[tuple[int, int], float]  # lowest ratio
    worst: tuple[tuple[int, int], float]  # highest ratio
    min_tokens: int | None  # smallest batch*seq at which SHA is cheaper


def crossover(g: RatioGrid) -> Crossover:
    cheaper = [k for k, r in g.ratio.items() if r < 1.0]
    per_seq: dict[int, int | None] = {}
    for q in g.seqs:
        bs = [b for b in g.batches if (b, q) in g.ratio]
        start = None
        for b in reversed(bs):  # smallest batch from which every larger batch is cheaper with SHA
            if g.ratio[(b, q)] < 1.0:
                start = b
            else:
                break
        per_seq[q] = start
    best = min(g.ratio.items(), key=lambda kv: kv[1])
    worst = max(g.ratio.items(), key=lambda kv: kv[1])
    toks = [b * q for b, q in cheaper]
    return Crossover(sorted(cheaper), len(g.ratio), per_seq, best, worst, min(toks) if toks else None)


@dataclass
class OverheadRow:
    """What serving over HTTP adds to a lone request, per model and shape."""

    model: str
    arch: str
    batch: int
    seq: int
    inproc_p50_ms: float
    http_p50_ms: float
    overhead_ms: float
    ratio: float  # HTTP p50 / in-process p50
    server_queue_ms: float | None
    server_compute_ms: float | None


def overhead(points: list[SweepRow]) -> list[OverheadRow]:
    """Per (model, batch, seq): HTTP concurrency-1 p50 minus in-process p50 (ms), and the ratio."""
    inproc = {(p.model, p.batch, p.seq): p.p50_ms for p in points if p.mode == "inproc"}
    out = []
    for p in points:
        base = inproc.get((p.model, p.batch, p.seq))
        if not is_lone(p) or p.p50_ms is None or base is None:
            continue
        out.append(
            OverheadRow(
                p.model,
                p.arch,
                p.batch,
                p.seq,
                base,
                p.p50_ms,
                p.p50_ms - base,
                p.p50_ms / base,
                p.server_queue_ms,
                p.server_compute_ms,
            )
        )
    return out


def max_throughput(points: list[SweepRow], mode: str) -> dict[str, float]:
    """model -> highest sequences/s (rows/s) seen in `mode`."""
    best: dict[str, float] = {}
    for p in points:
        if p.mode == mode and p.rps:
            best[p.model] = max(best.get(p.model, 0.0), p.rps * p.batch)
    return best
