"""`python -m loadtest report RESULTS_DIR`: Markdown report with tables, plots and a verdict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from contract import results
from contract.atomic import write_text
from contract.results import CapacityResults, CapacityRow, ResultMeta, SweepResults, SweepRow
from loadtest.profile import render, runner
from loadtest.report import analysis, choose, plots
from loadtest.report.decide import decide
from loadtest.report.study import HEADER as STUDY_HEADER
from loadtest.report.study import Study, load_study

REPORT_NAME = "report.md"


def _f(v: Any, nd: int = 2) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# a row key's column header where it is not the key with "_ms" as " ms" and "_" as " "
_HEADERS = {
    "requests": "runs",
    "rps": "req/s",
    "tokens_per_s": "tokens/s",
    "server_rows_per_batch": "rows/batch",
    "inproc_p50_ms": "in-process p50 ms",
    "http_p50_ms": "HTTP p50 ms",
}


def _keyed_table(keys: str, rows: Sequence[Any], **computed: Callable[[Any], Any]) -> str:
    """A table of the rows' fields named in `keys` (space-separated), or `computed[key](row)`: one
    string names the columns, so a section says what it shows and not how to lay it out."""
    cols = keys.split()
    header = [_HEADERS.get(k) or k.replace("_ms", " ms").replace("_", " ") for k in cols]
    return _table(header, [[computed[k](r) if k in computed else getattr(r, k) for k in cols] for r in rows])


def _section(title: str, *paragraphs: str) -> list[str]:
    """A report section: its heading, then each paragraph or table, each followed by a blank line."""
    return [f"## {title}", "", *(line for par in paragraphs for line in (par, ""))]


def _load_label(p: SweepRow) -> str:
    return p.load + (f" c={p.concurrency}" if p.load == "closed" else f" {p.rate or 0:g}/s")


def _pct(r: float) -> str:
    return f"{abs(1 - r) * 100:.0f}%"


def headline(points: list[SweepRow], capacity: CapacityResults | None) -> str:
    """What the CLI prints after writing a report: the cost verdict and/or the recommendation."""
    parts = [verdict(points)] if points or not capacity else []
    said = decide(capacity, points, capacity.meta.manifests, load_study()) if capacity else None
    if said is not None:
        parts.append(said.sentence)
    return "\n".join(parts)


def verdict(points: list[SweepRow]) -> str:
    """One paragraph: where SHA is cheaper than MHA, by how much, and the service overhead."""
    parts = []
    g = analysis.ratio_grid(points)
    if g is None:
        parts.append("No MHA/SHA pair was measured on a common shape, so there is no cost comparison.")
    else:
        c = analysis.crossover(g)
        (bb, bq), best = c.best
        (wb, wq), worst = c.worst
        if not c.cheaper:
            parts.append(
                f"{g.mha} (MHA) is cheaper than {g.sha} (SHA) at every one of the {c.total} shapes measured "
                f"({g.source}, p50): SHA costs {worst:.2f}x MHA at worst (batch {wb} x seq {wq}) and "
                f"{best:.2f}x at best (batch {bb} x seq {bq}), so no crossover appears in this grid."
            )
        elif len(c.cheaper) == c.total:
            parts.append(
                f"{g.sha} (SHA) is cheaper than {g.mha} (MHA) at all {c.total} shapes measured "
                f"({g.source}, p50), by up to {_pct(best)} (ratio {best:.2f} at batch {bb} x seq {bq}); "
                f"the crossover lies below this grid."
            )
        else:
            starts = [f"seq {q} from batch {b}" for q, b in c.per_seq.items() if b is not None]
            never = [str(q) for q, b in c.per_seq.items() if b is None]
            cross = "; ".join(starts) if starts else "no sequence length where it stays cheaper"
            parts.append(
                f"Crossover: {g.sha} (SHA) is cheaper than {g.mha} (MHA) at {len(c.cheaper)} of {c.total} shapes "
                f"({g.source}, p50) — {cross}"
                + (f" (never at seq {', '.join(never)})" if never else "")
                + f"; the smallest such batch holds {c.min_tokens} tokens. SHA's best is {best:.2f}x MHA "
                f"({_pct(best)} cheaper, batch {bb} x seq {bq}); MHA's best is SHA at {worst:.2f}x "
                f"(batch {wb} x seq {wq})."
            )
    ov = analysis.overhead(points)
    if ov:
        b1 = [r for r in ov if r.batch == min(x.batch for x in ov)]
        mean_ms = sum(r.overhead_ms for r in b1) / len(b1)
        parts.append(
            f"Serving over HTTP adds {mean_ms:.2f} ms to the p50 at batch {b1[0].batch} "
            f"(mean over {len(b1)} model/sequence pairs; {min(r.ratio for r in b1):.1f}-"
            f"{max(r.ratio for r in b1):.1f}x the in-process time)."
        )
    tin, thttp = analysis.max_throughput(points, "inproc"), analysis.max_throughput(points, "http")
    common = [m for m in tin if m in thttp]
    if common:
        ratios = ", ".join(f"{m} {thttp[m] / tin[m]:.0%}" for m in common)
        parts.append(f"The service's best throughput is {ratios} of the in-process best (sequences/s).")
    return " ".join(parts)


def _ran(meta: ResultMeta) -> bool:
    """Whether `meta` records a run (a folder without a sweep has an empty one)."""
    return meta != ResultMeta()


def _or_ask(v: Any) -> Any:
    return "?" if v is None else v


def _meta_section(meta: ResultMeta) -> str:
    m = meta.machine
    lines = [
        f"- machine: {_or_ask(m.cpu)}, {_or_ask(m.cores)} cores"
        + (f", GPU: {', '.join(m.gpus)}" if m.gpus else ", no GPU"),
        "- providers: "
        + "; ".join(
            f"{k}: " + ", ".join(f"{a}={b}" for a, b in d.items()) for k, d in meta.providers.items()
        ),
        "- versions: " + ", ".join(f"{k} {val}" for k, val in meta.versions.items()),
        f"- created {_or_ask(meta.created)}, {_or_ask(meta.duration_s)} s per HTTP point, "
        f"elapsed {_or_ask(meta.elapsed_s)} s",
    ]
    for name, mm in meta.models.items():
        lines.append(
            f"- {name}: {mm.arch.upper()} {mm.layers}L-{mm.heads}H, max sequence {mm.max_sequence_length}"
        )
    lines += [f"- note: {n}" for n in meta.notes]
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "–"


def _iv(v: float | None, lo: float | None, hi: float | None) -> str:
    """'0.84x [0.71, 0.97]', or '0.84x' without an interval."""
    if v is None:
        return "–"
    return f"{v:.2f}x" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "")


def _cap_cell(r: CapacityRow | None) -> str | None:
    """'2,573 [2,340-2,600], 3 rounds, 11 windows, 91% of ceiling' (the median over rounds first)."""
    if r is None:
        return None
    text = f"{r.capacity_rps:,.0f}"
    if r.capacity_lo_rps is not None and r.capacity_hi_rps is not None:
        text += f" [{r.capacity_lo_rps:,.0f}-{r.capacity_hi_rps:,.0f}]"
    text += f", {r.rounds} round{'s' * (r.rounds != 1)}, {r.probes} windows"
    if r.stable is False:
        text += ", unstable"
    if r.ceiling_share is not None:
        text += f", {r.ceiling_share:.0%} of ceiling"
    return text


def _p50_cell(c: choose.Candidate, rows: dict[tuple[str, int, int], CapacityRow]) -> Any:
    own = sorted(
        (k[2], r) for k, r in rows.items() if k[0] == c.model and k[1] == 1 and r.p50_c1_ms is not None
    )
    r = own[0][1] if own else None
    if r is None or r.p50_c1_lo_ms is None or r.p50_c1_hi_ms is None:
        return c.p50_b1_ms
    return f"{r.p50_c1_ms:.2f} [{r.p50_c1_lo_ms:.2f}-{r.p50_c1_hi_ms:.2f}]"


def _versus_row(
    cands: list[choose.Candidate],
    shapes: list[tuple[int, int]],
    seeded: Study | None,
    cap: CapacityResults | None,
) -> list[Any] | None:
    """SHA against MHA: accuracy as SHA − MHA in points, the p50 and capacity ratios as SHA/MHA
    with their intervals over paired rounds (None without both architectures)."""
    mha = next((c for c in cands if c.arch == "mha"), None)
    sha = next((c for c in cands if c.arch == "sha"), None)
    if not (mha and sha):
        return None
    points = (
        f"SHA − MHA {100 * (sha.accuracy - mha.accuracy):+.2f} points"
        if sha.accuracy is not None and mha.accuracy is not None
        else None
    )
    ratio = {(x.batch, x.seq): x for x in (cap.ratios if cap else [])}
    caps = [
        _iv(x.sha_over_mha, x.sha_over_mha_lo, x.sha_over_mha_hi)
        if (x := ratio.get(k))
        else _ratio(sha.capacity.get(k), mha.capacity.get(k))
        for k in shapes
    ]
    head = ratio.get(shapes[0]) if shapes else None
    p50 = (
        _iv(head.p50_sha_over_mha, head.p50_sha_over_mha_lo, head.p50_sha_over_mha_hi)
        if head and head.p50_sha_over_mha is not None
        else _ratio(sha.p50_b1_ms, mha.p50_b1_ms)
    )
    diff = [seeded.diff_cell()] if seeded else []
    return ["SHA vs MHA", "", points, *diff, p50, *caps]


def which_model_table(
    cands: list[choose.Candidate],
    shapes: list[tuple[int, int]],
    seeded: Study | None = None,
    cap: CapacityResults | None = None,
) -> str:
    """Per model: its own test accuracy, the seeded study's for its architecture (when there is
    one), p50 at batch 1 and capacity per shape, each with its range over rounds; the service's
    own ceiling (null engine) when it was measured; then SHA against MHA (accuracy as SHA − MHA
    in points, the p50 and capacity ratios as SHA/MHA with their intervals over paired rounds)."""
    by = {(r.model, r.batch, r.seq): r for r in (cap.rows if cap else [])}
    norms = {c.model: c.norm for c in cands}
    study = [[seeded.cell(c.arch, norms[c.model])] for c in cands] if seeded else [[] for _ in cands]
    rows: list[list[Any]] = [
        [
            c.model,
            c.shape_label,
            None if c.accuracy is None else f"{c.accuracy:.4f}",
            *study[i],
            _p50_cell(c, by),
            *[_cap_cell(by.get((c.model, *k))) or c.capacity.get(k) for k in shapes],
        ]
        for i, c in enumerate(cands)
    ]
    ceiling = {(r.batch, r.seq): r for r in (cap.ceiling if cap else [])}
    if ceiling:
        cells = [_cap_cell(ceiling.get(k)) for k in shapes]
        rows.append(
            ["service ceiling (null engine)", "no model", None, *([None] if seeded else []), None, *cells]
        )
    versus = _versus_row(cands, shapes, seeded, cap)
    if versus is not None:
        rows.append(versus)
    header = [
        "model",
        "layers x heads",
        "test acc, this model",
        *([STUDY_HEADER] if seeded else []),
        "p50 ms, batch 1",
        *[f"req/s b{b} s{q}" for b, q in shapes],
    ]
    return _table(header, rows)


def which_model_answer(
    cap: CapacityResults, points: list[SweepRow], manifests: dict[str, Any]
) -> tuple[str, str]:
    """The capacity search's answer: the which-model table and the one-sentence recommendation
    (then the seeded study's gap, when docs/accuracy.json has one); "" for both when the search
    measured nothing. `make demo` prints these two as they are."""
    rows = cap.rows
    shape = choose.headline_shape(rows)
    if shape is None:
        return "", ""
    cands = choose.candidates(rows, points, manifests)
    shapes = sorted({(r.batch, r.seq) for r in rows})
    seeded = load_study()
    said = decide(cap, points, manifests, seeded)
    sentence = said.sentence if said else ""
    if seeded and seeded.sentence() and "seeded study" not in sentence:  # said once, not twice
        sentence += f" {seeded.sentence()}"
    return which_model_table(cands, shapes, seeded, cap), sentence


def which_model_section(cap: CapacityResults, points: list[SweepRow], manifests: dict[str, Any]) -> list[str]:
    """Markdown lines: one recommendation, what capacity means here, and the which-model table."""
    table, sentence = which_model_answer(cap, points, manifests)
    if not table:
        return []
    rows = cap.rows
    slo, max_err = rows[0].slo_p99_ms, rows[0].max_error_rate
    source = choose.candidates(rows, points, manifests)[0].p50_source
    return [
        "## Which model to serve",
        "",
        sentence,
        "",
        f"Capacity: the highest Poisson arrival rate (requests/s) whose p99, measured from the intended "
        f"send times, stays within {slo:g} ms with at most {max_err:.2%} errors (429s included); "
        f"`python -m loadtest capacity`: the median over interleaved rounds [lowest-highest round] and the "
        f"windows (probes) behind it; SHA vs MHA: the median ratio [its interval over paired rounds, each "
        f"round's search bracket included]. p50 at batch 1: {source or 'not measured'}"
        f"{' [range over rounds]' if any(r.p50_c1_lo_ms is not None for r in rows) else ''}."
        + (
            " The service ceiling is the same search against the service started with `--null-engine` "
            "(no model runs): what the service itself allows on this machine."
            if cap.ceiling
            else ""
        ),
        "",
        table,
        "",
    ]


PLOTS = (
    ("latency_vs_batch.png", "Latency vs batch size"),
    ("ratio_heatmap.png", "SHA/MHA ratio"),
    ("throughput_vs_concurrency.png", "Throughput vs concurrency"),
    ("overhead.png", "Service overhead"),
)


def build(
    points: list[SweepRow], meta: ResultMeta, images: list[Path], capacity: CapacityResults | None = None
) -> str:
    """The report, a section per kind of result present: a capacity-only folder (no sweep) still
    gets a report, and a sweep without capacity has no empty recommendation."""
    out = ["# Load test: shallow multi-head vs deep single-head", ""]
    if points or not capacity:
        out += _section("Verdict", verdict(points))
    if capacity:
        out += _capacity_section(capacity, points, meta, images)
    out += _setup_section(meta, capacity)
    out += _ratio_section(points)
    names = {p.name for p in images}
    for fname, title in PLOTS:
        if fname in names:
            out += [f"![{title}]({fname})", ""]
    out += _inproc_section(points) + _http_section(points) + _overhead_section(points)
    return "\n".join(out) + "\n"


def _capacity_section(
    cap: CapacityResults, points: list[SweepRow], meta: ResultMeta, images: list[Path]
) -> list[str]:
    """The recommendation and its plot, or why there is no plot."""
    manifests = {**cap.meta.manifests, **meta.manifests}
    out = which_model_section(cap, points, manifests)
    if any(p.name == "accuracy_vs_capacity.png" for p in images):
        return out + ["![Accuracy vs capacity](accuracy_vs_capacity.png)", ""]
    return out + ["(No accuracy-vs-capacity plot: no model has a recorded test accuracy.)", ""]


def _setup_section(meta: ResultMeta, capacity: CapacityResults | None) -> list[str]:
    """The sweep's machine and versions (the capacity run's when there is no sweep); with both, the
    capacity search's own date and length, since the two ran at different times."""
    out = ["## Setup", "", _meta_section(capacity.meta if capacity and not _ran(meta) else meta), ""]
    if capacity and _ran(meta):
        cm = capacity.meta
        out[-1:] = [
            f"- capacity search: created {_or_ask(cm.created)}, elapsed {_or_ask(cm.elapsed_s)} s",
            "",
        ]
    return out


def _ratio_section(points: list[SweepRow]) -> list[str]:
    """SHA over MHA per shape, bold where SHA is cheaper, so the crossover shows at a glance."""
    g = analysis.ratio_grid(points)
    if g is None:
        return []
    rows = []
    for q in g.seqs:
        cells = []
        for b in g.batches:
            r = g.ratio.get((b, q))
            cells.append("–" if r is None else (f"**{r:.2f}**" if r < 1 else f"{r:.2f}"))
        rows.append([f"seq {q}", *cells])
    return _section(
        f"SHA / MHA p50 latency ratio ({g.source})",
        f"{g.sha} / {g.mha}; below 1 (bold) SHA is cheaper.",
        _table(["", *[f"batch {b}" for b in g.batches]], rows),
    )


def _inproc_section(points: list[SweepRow]) -> list[str]:
    inproc = [p for p in points if p.mode == "inproc"]
    if not inproc:
        return []
    table = _keyed_table("model batch seq p50_ms p95_ms p99_ms requests tokens_per_s provider", inproc)
    # rows PyTorch timed (the torch reference, the training step) name what ran, not ONNX Runtime
    torch_rows = all((p.provider or "").startswith("torch-") for p in inproc)
    runtime = ", ".join(sorted({p.variant or "PyTorch" for p in inproc})) if torch_rows else "ONNX Runtime"
    return _section(f"In-process ({runtime})", table)


def _http_section(points: list[SweepRow]) -> list[str]:
    """Client-side latencies beside the server's own split (queue vs compute) from /metrics."""
    http = [p for p in points if p.mode == "http"]
    if not http:
        return []
    return _section(
        "Over HTTP",
        "Open-loop latencies are measured from each request's intended (Poisson) send time. "
        "Server queue ms is the mean per request, compute ms the mean per executed batch "
        "(from `/metrics`, diffed over the point).",
        _keyed_table(
            "model load batch seq p50_ms p95_ms p99_ms rps tokens_per_s errors late_sends server_queue_ms "
            "server_compute_ms server_rows_per_batch",
            http,
            load=_load_label,
        ),
    )


def _overhead_section(points: list[SweepRow]) -> list[str]:
    ov = analysis.overhead(points)
    if not ov:
        return []
    table = _keyed_table("model batch seq inproc_p50_ms http_p50_ms overhead_ms ratio", ov)
    return _section("Service overhead over in-process (concurrency 1)", table)


def write_report(results_dir: Path) -> Path:
    """report.md and the plots from results.json (the sweep) and/or capacity.json (the SLO search)."""
    results_dir = Path(results_dir)
    folder = results_dir.parent if results_dir.is_file() else results_dir
    has_sweep = results_dir.is_file() or (folder / results.JSON_NAME).is_file()
    data = results.load(results_dir) if has_sweep else SweepResults(points=[])
    cap = results.load_capacity(folder)
    images = plots.all_plots(data.points, folder)
    if cap and cap.rows:
        manifests = {**cap.meta.manifests, **data.meta.manifests}
        cands = choose.candidates(cap.rows, data.points, manifests)
        shape = choose.headline_shape(cap.rows)
        plot = plots.accuracy_vs_capacity(cands, shape, cap.rows[0].slo_p99_ms, folder) if shape else None
        images += [plot] if plot else []
    path = folder / REPORT_NAME
    write_text(path, build(data.points, data.meta, images, cap) + _profile_section(folder))
    return path


def _profile_section(folder: Path) -> str:
    """`python -m loadtest profile`'s table when the folder holds a complete profile.json."""
    data = runner.load(folder)
    return "\n".join(["", *render.section_md(data)]) + "\n" if data else ""
