"""The GPU report's summary (`make gpu-report`, scripts/gpu_report.py): one page over the result
folders it wrote (in-process sweeps per variant, the HTTP sweep with the capacity search), the
facts of the device, and the block appended to docs/benchmarks.md.

Pure over the folders' results.json / capacity.json, so it is tested on CPU-made results.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from loadtest import results
from loadtest.profile import render as profile_render
from loadtest.profile import runner as profile_runner
from loadtest.report import analysis, choose, versus
from loadtest.report.markdown import verdict
from loadtest.results import SweepRow


def slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (a folder name under docs/gpu/)."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return s or "unknown-gpu"


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


def crossover_facts(points: list[SweepRow]) -> dict[str, Any] | None:
    g = analysis.ratio_grid(points)
    if g is None:
        return None
    c = analysis.crossover(g)
    return {
        "sha_cheaper_at": [list(k) for k in c.cheaper],
        "shapes": c.total,
        "best_ratio": c.best[1],
        "best_at": list(c.best[0]),
        "worst_ratio": c.worst[1],
        "worst_at": list(c.worst[0]),
        "from_batch_per_seq": {str(q): b for q, b in c.per_seq.items()},
        "ratios": {f"b{b}_s{q}": r for (b, q), r in g.ratio.items()},
    }


def crossover_sentence(label: str, facts: dict[str, Any] | None) -> str:
    if facts is None:
        return f"{label}: no MHA/SHA pair measured."
    n, total = len(facts["sha_cheaper_at"]), facts["shapes"]
    (bb, bq), best = facts["best_at"], facts["best_ratio"]
    if n == 0:
        return (
            f"{label}: no crossover — MHA is cheaper at all {total} shapes; SHA's best is {best:.2f}x MHA "
            f"(batch {bb} x seq {bq})."
        )
    starts = [f"seq {q} from batch {b}" for q, b in facts["from_batch_per_seq"].items() if b is not None]
    return (
        f"{label}: the crossover appears — SHA is cheaper at {n} of {total} shapes "
        f"({'; '.join(starts) or 'not contiguously'}), down to {best:.2f}x MHA at batch {bb} x seq {bq}."
    )


def _folder(path: Path) -> tuple[list[SweepRow], dict[str, Any]] | None:
    if not (path / results.JSON_NAME).is_file():
        return None
    data = results.load(path)
    return data.points, data.meta


def collect(out: Path, variants: dict[str, str]) -> dict[str, Any]:
    """Facts per result folder under `out`: `variants` maps folder name -> variant file."""
    inproc = {}
    for folder, variant in variants.items():
        got = _folder(out / folder)
        if got is not None:
            points, _ = got
            inproc[folder] = {
                "variant": variant,
                "verdict": verdict(points),
                "crossover": crossover_facts(points),
                "providers": sorted({p.provider for p in points if p.provider}),
            }
    http: dict[str, Any] = {}
    got = _folder(out / "http")
    cap = results.load_capacity(out / "http") if (out / "http").is_dir() else None
    if got is not None:
        http["verdict"] = verdict(got[0])
    if cap and cap.rows:
        rows = cap.rows
        shape = choose.headline_shape(rows)
        cands = choose.candidates(rows, got[0] if got else [], cap.meta.manifests)
        http["recommendation"] = choose.recommend(cands, shape, rows[0].slo_p99_ms) if shape else None
        http["capacity"] = [
            r.model_dump(include={"model", "batch", "seq", "capacity_rps", "p99_ms", "status"}) for r in rows
        ]
        http["capacity_ratios"] = [x.model_dump() for x in cap.ratios]
        http["slo_p99_ms"] = rows[0].slo_p99_ms
    prof = profile_runner.load(out / "profile")
    fastest = versus.wins(versus.p50_grid(points_by_label(out, inproc)))
    return {"inproc": inproc, "http": http, "fastest": fastest, "profile": _profile_facts(prof)}


def points_by_label(out: Path, inproc: dict[str, Any]) -> dict[str, list[SweepRow]]:
    """Each in-process folder's rows under its variant label (the comparison's columns)."""
    return {info["variant"]: got[0] for f, info in inproc.items() if (got := _folder(out / f))}


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


def report_md(facts: dict[str, Any], summary: dict[str, Any], out: Path) -> str:
    """The top-level report.md of docs/gpu/<gpu>/."""
    g = facts["gpu"]
    lines = [
        f"# GPU report: {g['name']}",
        "",
        f"- GPU: {g['name']}, driver {g.get('driver', '?')}, CUDA (driver) {g.get('cuda_driver', '?')}, "
        f"{g.get('memory_gib', '?')} GiB; host: {facts['machine'].get('cpu', '?')}, {facts['machine'].get('cores', '?')} cores",
        f"- ONNX Runtime providers available: {', '.join(facts.get('providers', []))}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in facts.get("versions", {}).items()),
        f"- created {facts.get('created', '?')} by `make gpu-report` in {facts.get('elapsed_s', '?')} s",
        "",
        "| step | status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']:.0f} |" for s in facts.get("steps", [])]
    lines += ["", "## The paper's crossover on this GPU", ""]
    for info in summary["inproc"].values():
        lines += ["- " + crossover_sentence("in-process, " + info["variant"], info["crossover"])]
    compared = versus.table_md(points_by_label(out, summary["inproc"]))
    if compared:
        lines += ["", "## Which way to run each model: p50 ms in-process, per shape", "", *compared]
    prof = profile_runner.load(out / "profile")
    if prof:
        lines += [
            "",
            *profile_render.section_md(prof, "## Where the time goes ([profile](profile/report.md))"),
        ]
    for folder, info in summary["inproc"].items():
        got = _folder(out / folder)
        lines += [
            "",
            f"## In-process, {info['variant']} ([full report]({folder}/report.md))",
            "",
            info["verdict"],
            "",
        ]
        lines += ratio_table(got[0]) if got else []
    http = summary["http"]
    if http:
        lines += ["", "## Served over HTTP ([full report](http/report.md))", ""]
        lines += [x for x in (http.get("verdict"), http.get("recommendation")) if x]
    return "\n".join(lines) + "\n"


def benchmarks_block(facts: dict[str, Any], summary: dict[str, Any], rel: str) -> str:
    """The section appended to docs/benchmarks.md (`rel`: the report folder, relative to docs/)."""
    g = facts["gpu"]
    lines = [
        "",
        f"## GPU report: {g['name']} ({str(facts.get('created', '?'))[:10]}, `make gpu-report`)",
        "",
        f"Driver {g.get('driver', '?')}; full report: [{rel}/report.md]({rel}/report.md).",
        "",
    ]
    for info in summary["inproc"].values():
        lines.append("- " + crossover_sentence("in-process, " + info["variant"], info["crossover"]))
    for model, counts in sorted(summary.get("fastest", {}).items()):
        lines.append(
            f"- fastest way to run {model}: "
            + ", ".join(f"{lb} at {n}" for lb, n in counts.items())
            + f" of {sum(counts.values())} shapes"
        )
    http = summary["http"]
    for r in http.get("capacity_ratios", []):
        if r.get("sha_over_mha") is not None:
            lines.append(
                f"- capacity at p99 <= {http['slo_p99_ms']:g} ms, batch {r['batch']} x seq {r['seq']}: "
                f"MHA {r['mha_rps']:,.0f} req/s, SHA {r['sha_rps']:,.0f} req/s (SHA/MHA {r['sha_over_mha']:.2f})"
            )
    if http.get("recommendation"):
        lines.append(f"- {http['recommendation']}")
    return "\n".join(lines) + "\n"
