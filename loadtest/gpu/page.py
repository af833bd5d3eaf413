"""The GPU report's pages: report.md of docs/gpu/<gpu>/ (with its crossover plot) and the block
appended to docs/benchmarks.md, both written from `summary.Summary`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.gpu import crossover, kernel_page, versus
from loadtest.gpu.summary import HttpFacts, Summary, crossover_sentence, ratio_table
from loadtest.profile import render as profile_render

GOAL_TOKENS_PER_S = 2.5e6  # MHA base at batch 64 x seq 128, the best ONNX Runtime configuration


def _head(facts: dict[str, Any]) -> list[str]:
    g, m = facts["gpu"], facts.get("machine", {})
    lines = [
        f"# GPU report: {g['name']}",
        "",
        f"- GPU: {g['name']}, driver {g.get('driver', '?')}, CUDA (driver) {g.get('cuda_driver', '?')}, "
        f"{g.get('memory_gib', '?')} GiB; host: {m.get('cpu', '?')}, {m.get('cores', '?')} cores",
        f"- ONNX Runtime providers available: {', '.join(facts.get('providers', []))}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in facts.get("versions", {}).items()),
        f"- created {facts.get('created', '?')} by `make gpu-report` in {facts.get('elapsed_s', '?')} s",
        "",
        "| step | status | seconds |",
        "|---|---|---|",
    ]
    return lines + [f"| {s['name']} | {s['status']} | {s['seconds']:.0f} |" for s in facts.get("steps", [])]


def throughput_md(s: Summary) -> list[str]:
    """Achieved TFLOP/s against the measured peak, per model at its best, and at the goal shape."""
    rates, goal = s.rates(), s.goal_rates()
    if not rates:
        return []
    peak = ", ".join(f"{k} {v:,.0f}" for k, v in s.peak.items()) or "not measured"
    lines = ["## Throughput against the measured peak", "", f"Matmul peak (TFLOP/s): {peak}.", ""]
    lines += [f"- best: {r.sentence()}." for r in rates]
    for r in goal:
        if r.model.startswith("mha-base"):
            met = "meets" if r.tokens_per_s >= GOAL_TOKENS_PER_S else "misses"
            lines.append(
                f"- goal shape: {r.sentence()}; {met} the goal of {GOAL_TOKENS_PER_S / 1e6:.1f}M tokens/s."
            )
    return lines


def crossover_md(s: Summary, png: str | None) -> list[str]:
    lines = ["## The paper's crossover on this GPU", ""]
    lines += [f"- {crossover_sentence('in-process, ' + f.label, f.crossover)}" for f in s.inproc.values()]
    series = s.series()
    if series:
        lines += ["", "### SHA/MHA against tokens per batch", ""]
        lines += [f"![SHA/MHA vs tokens per batch]({png})", ""] if png else []
        lines += [f"- {crossover.sentence(x)}" for x in series]
    return lines


def _spread(lo: float | None, hi: float | None, fmt: str, sep: str) -> str:
    """' [lo-hi]' (or ' [lo, hi]' with sep ', '), '' when either end is unknown."""
    return f" [{lo:{fmt}}{sep}{hi:{fmt}}]" if lo is not None and hi is not None else ""


def small_md(s: Summary) -> list[str]:
    """The demo's small pair: the served configuration's p50 per shape and its HTTP capacity."""
    f = s.inproc.get("small-served")
    if f is None:
        return []
    lines = [f"## The demo's small pair, {f.label}", "", "| model | batch x seq | p50 ms |", "|---|---|---|"]
    cells = versus.p50_grid({f.label: f.rows})
    lines += [f"| {m} | {b} x {q} | {c[f.label].md(False)} |" for (m, b, q), c in sorted(cells.items())]
    h = s.http.get("small-http")
    if h:
        lines += [""] + [
            f"- capacity at p99 <= {h.slo_p99_ms:g} ms, {r.model} batch {r.batch} x seq {r.seq}: "
            f"{r.capacity_rps:,.0f} req/s{_spread(r.capacity_lo_rps, r.capacity_hi_rps, ',.0f', '-')} "
            f"({r.status}, {r.rounds} round{'s' * (r.rounds != 1)}, {r.probes} windows)"
            for r in h.capacity
        ]
    return lines


def report_md(facts: dict[str, Any], s: Summary, png: str | None = None) -> str:
    """The top-level report.md of docs/gpu/<gpu>/ (`png`: the crossover plot's file name)."""
    lines = _head(facts)
    lines += ["", *throughput_md(s)] if s.rates() else []
    lines += ["", *crossover_md(s, png)]
    compared = versus.table_md(s.paper_grid())
    if compared:
        lines += ["", "## Which way to run each model: p50 ms in-process, per shape", "", *compared]
    if s.kernels:
        lines += [
            "",
            *kernel_page.section_md(s.kernels, "## CUDA kernels per run ([kernels](kernels/report.md))"),
        ]
    if s.profile:
        title = "## Where the time goes: ONNX Runtime's profiler ([profile](profile/report.md))"
        lines += ["", *profile_render.section_md(s.profile, title)]
    lines += ["", *small_md(s)] if "small-served" in s.inproc else []
    for f in s.inproc.values():
        title = "Training step cost" if f in s.training else "In-process"
        lines += ["", f"## {title}, {f.label} ([full report]({f.folder}/report.md))", "", f.verdict, ""]
        lines += ratio_table(f.rows)
    http = s.http.get("http")
    if http:
        lines += ["", "## Served over HTTP ([full report](http/report.md))", "", *served_md(facts, http)]
    return "\n".join(lines) + "\n"


def served_md(facts: dict[str, Any], http: HttpFacts) -> list[str]:
    """The service's shape (fronts and one engine), its verdict and capacity, and the engine's
    compute per batch alone and under load."""
    start = next((st for st in facts.get("steps", []) if st["name"] == "http-start"), {})
    lines = []
    if start.get("fronts"):
        lines += [f"The service ran {start['fronts']} HTTP front process(es) and one engine process.", ""]
    lines += [x for x in (http.verdict, http.recommendation) if x]
    if http.compute:
        lines += [
            "",
            "| model | request batch x seq | engine compute per batch, alone (ms) | under load (ms) | rows per batch under load |",
            "|---|---|---|---|---|",
            *(
                f"| {c.model} | {c.batch} x {c.seq} | {c.idle_ms:.3f} | {c.load_ms:.3f} (concurrency {c.concurrency}) "
                f"| {c.load_rows:.1f} |"
                for c in http.compute
            ),
        ]
    return lines


def benchmarks_block(facts: dict[str, Any], s: Summary, rel: str) -> str:
    """The section appended to docs/benchmarks.md (`rel`: the report folder, relative to docs/)."""
    g = facts["gpu"]
    lines = [
        "",
        f"## GPU report: {g['name']} ({str(facts.get('created', '?'))[:10]}, `make gpu-report`)",
        "",
        f"Driver {g.get('driver', '?')}; full report: [{rel}/report.md]({rel}/report.md).",
        "",
    ]
    series = s.series()
    lines += [f"- {crossover.sentence(x)}" for x in series] or [
        f"- {crossover_sentence('in-process, ' + f.label, f.crossover)}" for f in s.inproc.values()
    ]
    for model, counts in sorted(versus.wins(versus.p50_grid(s.paper_grid())).items()):
        lines.append(f"- way to run {model}: {versus.wins_sentence(counts)}")
    lines += [f"- throughput at its best: {r.sentence()}" for r in s.rates()]
    http = s.http.get("http")
    for r in http.capacity_ratios if http else []:
        if r.sha_over_mha is not None:
            lines.append(
                f"- capacity at p99 <= {http.slo_p99_ms:g} ms, batch {r.batch} x seq {r.seq}: "
                f"MHA {r.mha_rps:,.0f} req/s, SHA {r.sha_rps:,.0f} req/s (SHA/MHA {r.sha_over_mha:.2f}"
                f"{_spread(r.sha_over_mha_lo, r.sha_over_mha_hi, '.2f', ', ')} over {r.rounds} paired rounds)"
            )
    if http and http.recommendation:
        lines.append(f"- {http.recommendation}")
    return "\n".join(lines) + "\n"


def write_plot(s: Summary, out: Path) -> str | None:
    """crossover.png in `out` (None without a pair to plot)."""
    path = crossover.plot(s.series(), out / crossover.PNG_NAME, "SHA/MHA vs tokens per batch")
    return path.name if path else None
