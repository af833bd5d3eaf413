"""`python -m loadtest report RESULTS_DIR`: Markdown report with tables, plots and a verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest import analysis, plots, results
from models.atomic import write_text

Row = dict[str, Any]
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


def _pct(r: float) -> str:
    return f"{abs(1 - r) * 100:.0f}%"


def verdict(points: list[Row]) -> str:
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
        b1 = [r for r in ov if r["batch"] == min(x["batch"] for x in ov)]
        mean_ms = sum(r["overhead_ms"] for r in b1) / len(b1)
        parts.append(
            f"Serving over HTTP adds {mean_ms:.2f} ms to the p50 at batch {b1[0]['batch']} "
            f"(mean over {len(b1)} model/sequence pairs; {min(r['ratio'] for r in b1):.1f}-"
            f"{max(r['ratio'] for r in b1):.1f}x the in-process time)."
        )
    tin, thttp = analysis.max_throughput(points, "inproc"), analysis.max_throughput(points, "http")
    common = [m for m in tin if m in thttp]
    if common:
        ratios = ", ".join(f"{m} {thttp[m] / tin[m]:.0%}" for m in common)
        parts.append(f"The service's best throughput is {ratios} of the in-process best (sequences/s).")
    return " ".join(parts)


def _meta_section(meta: dict[str, Any]) -> str:
    m = meta.get("machine", {})
    prov = meta.get("providers", {})
    v = meta.get("versions", {})
    lines = [
        f"- machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores"
        + (f", GPU: {', '.join(m['gpus'])}" if m.get("gpus") else ", no GPU"),
        "- providers: " + "; ".join(f"{k}: " + ", ".join(f"{a}={b}" for a, b in d.items()) for k, d in prov.items()),
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- created {meta.get('created', '?')}, {meta.get('duration_s', '?')} s per HTTP point, "
        f"elapsed {meta.get('elapsed_s', '?')} s",
    ]  # fmt: skip
    for name, mm in (meta.get("models") or {}).items():
        lines.append(f"- {name}: {str(mm.get('arch', '')).upper()} {mm.get('layers')}L-{mm.get('heads')}H, "
                     f"max sequence {mm.get('max_sequence_length')}")  # fmt: skip
    lines += [f"- note: {n}" for n in meta.get("notes", [])]
    return "\n".join(lines)


def build(points: list[Row], meta: dict[str, Any], images: list[Path]) -> str:
    out = ["# Load test: shallow multi-head vs deep single-head", "", "## Verdict", "", verdict(points), "",
           "## Setup", "", _meta_section(meta), ""]  # fmt: skip
    g = analysis.ratio_grid(points)
    if g is not None:
        out += [f"## SHA / MHA p50 latency ratio ({g.source})", "",
                f"{g.sha} / {g.mha}; below 1 (bold) SHA is cheaper.", ""]  # fmt: skip
        rows = []
        for q in g.seqs:
            cells = []
            for b in g.batches:
                r = g.ratio.get((b, q))
                cells.append("–" if r is None else (f"**{r:.2f}**" if r < 1 else f"{r:.2f}"))
            rows.append([f"seq {q}", *cells])
        out += [_table(["", *[f"batch {b}" for b in g.batches]], rows), ""]
    names = {p.name: p for p in images}
    for fname, title in (("latency_vs_batch.png", "Latency vs batch size"), ("ratio_heatmap.png", "SHA/MHA ratio"),
                         ("throughput_vs_concurrency.png", "Throughput vs concurrency"),
                         ("overhead.png", "Service overhead")):  # fmt: skip
        if fname in names:
            out += [f"![{title}]({fname})", ""]
    inproc = [p for p in points if p.get("mode") == "inproc"]
    if inproc:
        out += ["## In-process (ONNX Runtime)", "", _table(
            ["model", "batch", "seq", "p50 ms", "p95 ms", "p99 ms", "runs", "tokens/s", "provider"],
            [[p["model"], p["batch"], p["seq"], p["p50_ms"], p["p95_ms"], p["p99_ms"], p["requests"],
              p["tokens_per_s"], p.get("provider")] for p in inproc]), ""]  # fmt: skip
    http = [p for p in points if p.get("mode") == "http"]
    if http:
        out += ["## Over HTTP", "",
                "Open-loop latencies are measured from each request's intended (Poisson) send time. "
                "Server queue ms is the mean per request, compute ms the mean per executed batch "
                "(from `/metrics`, diffed over the point).", "", _table(
            ["model", "load", "batch", "seq", "p50 ms", "p95 ms", "p99 ms", "req/s", "tokens/s", "errors",
             "late sends", "server queue ms", "server compute ms", "rows/batch"],
            [[p["model"], p["load"] + (f" c={p['concurrency']}" if p["load"] == "closed" else f" {p['rate']:g}/s"),
              p["batch"], p["seq"], p.get("p50_ms"), p.get("p95_ms"), p.get("p99_ms"), p.get("rps"),
              p.get("tokens_per_s"), p.get("errors"), p.get("late_sends"), p.get("server_queue_ms"),
              p.get("server_compute_ms"), p.get("server_rows_per_batch")] for p in http]), ""]  # fmt: skip
    ov = analysis.overhead(points)
    if ov:
        out += ["## Service overhead over in-process (concurrency 1)", "", _table(
            ["model", "batch", "seq", "in-process p50 ms", "HTTP p50 ms", "overhead ms", "ratio"],
            [[r["model"], r["batch"], r["seq"], r["inproc_p50_ms"], r["http_p50_ms"], r["overhead_ms"], r["ratio"]]
             for r in ov]), ""]  # fmt: skip
    return "\n".join(out) + "\n"


def write_report(results_dir: Path) -> Path:
    data = results.load(results_dir)
    results_dir = Path(results_dir)
    if results_dir.is_file():
        results_dir = results_dir.parent
    images = plots.all_plots(data["points"], results_dir)
    path = results_dir / REPORT_NAME
    write_text(path, build(data["points"], data["meta"], images))
    return path
