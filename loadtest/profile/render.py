"""The profile as a text table (stdout) and as a report section (markdown)."""

from __future__ import annotations

from typing import Any

from loadtest.profile.classify import CLASSES

HEAD = [
    "model",
    "variant",
    "provider",
    "nodes/run",
    "kernels/run",
    "wall ms",
    "ORT run ms",
    "nodes ms",
    "gap ms",
    "kernels ms",
]


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _count(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def cells(row: dict[str, Any]) -> list[str]:
    """One row's cells in HEAD + CLASSES order (ms per run for each operator class)."""
    return [
        row["model"],
        row["variant"],
        str(row["provider"]).removesuffix("ExecutionProvider"),
        _count(row["nodes_per_run"]),
        _count(row.get("kernels_per_run")),
        _ms(row["wall_ms"]),
        _ms(row["run_ms"]),
        _ms(row["node_ms"]),
        _ms(row["gap_ms"]),
        _ms(row.get("kernel_ms")),
        *(_ms(row["classes"][c]["ms"]) for c in CLASSES),
    ]


def ratio_line(r: dict[str, Any]) -> str:
    """'model.onnx: SHA/MHA wall 3.10x, nodes 3.80x, node time 2.90x, gap 4.20x'."""
    parts = [("wall", "wall_ms"), ("nodes", "nodes_per_run"), ("node time", "node_ms"), ("gap", "gap_ms")]
    said = [f"{label} {r[k]:.2f}x" for label, k in parts if r.get(k) is not None]
    return f"{r['variant']}: SHA/MHA ({r['sha']} / {r['mha']}) " + ", ".join(said)


def text_table(data: dict[str, Any]) -> str:
    """Aligned columns for a terminal, then one SHA/MHA line per variant and the notes."""
    head = HEAD + [f"{c} ms" for c in CLASSES]
    body = [cells(r) for r in data["rows"]]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = [
        "  ".join(
            x.ljust(w) if i < 3 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [head, *body]
    ]
    lines += [ratio_line(r) for r in data["ratios"]]
    lines += [f"note: {n}" for n in data.get("notes", [])]
    return "\n".join(lines)


def section_md(data: dict[str, Any], title: str = "## Where the time goes") -> list[str]:
    """The report's section: what was run, the table, the SHA/MHA ratios, how to read the gap."""
    spec = data["spec"]
    lines = [
        title,
        "",
        f"ONNX Runtime's profiler, batch {spec['batch']} x seq {spec['seq']}, mean of {spec['runs']} runs "
        f"after {spec['warmup']} warm-up runs (profiling on; `python -m loadtest profile`). "
        "*wall*: the call as the caller sees it; *ORT run*: inside ONNX Runtime; *nodes*: the sum of "
        "its operators; *gap*: ORT run minus nodes (scheduling, allocation, dispatch between operators); "
        "*kernels*: GPU time of the CUDA kernels, where the build records them. "
        "Operator classes in ms per run.",
        "",
        "| " + " | ".join(HEAD + list(CLASSES)) + " |",
        "|" + "---|" * (len(HEAD) + len(CLASSES)),
    ]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in data["rows"]]
    lines += [""] + [f"- {ratio_line(r)}" for r in data["ratios"]]
    if any(str(r["provider"]).startswith("CUDA") and r.get("kernels_per_run") is None for r in data["rows"]):
        lines.append(
            "- On CUDA a node's time is host time (mostly its launch), not GPU time: with no kernel "
            "events in the trace (ONNX Runtime built without CUDA profiling), the gap holds the wait "
            "for the GPU as well."
        )
    lines += [f"- note: {n}" for n in data.get("notes", [])]
    return lines
