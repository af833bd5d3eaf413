"""The CUDA kernel profile's rows and how they read: the table, and one sentence per architecture
on where its time goes (torch-free, so the GPU report's summary can read kernels.json)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.manifest import GPU_FILE
from loadtest.gpu.plan import KERNELS_JSON
from loadtest.profile import cupti
from loadtest.profile import runner as profile_runner
from loadtest.profile.classify import CLASSES


@dataclass(frozen=True)
class KernelRow:
    model: str
    arch: str
    layers: int
    heads: int
    runtime: str  # onnxruntime | torch
    how: str  # the variant (+ CUDA graphs) or the PyTorch mode's label
    profile: cupti.KernelProfile

    def as_json(self) -> dict[str, Any]:
        head = {k: getattr(self, k) for k in ("model", "arch", "layers", "heads", "runtime", "how")}
        return head | self.profile.as_json()


HEAD = [
    "model",
    "runtime",
    "way",
    "kernels/run",
    "wall ms",
    "GPU busy ms",
    "busy",
    "mean kernel µs",
    "min kernel µs",
    "floor ms",
]


def cells(r: KernelRow) -> list[str]:
    p = r.profile
    return [
        r.model,
        r.runtime,
        r.how,
        f"{p.kernels_per_run:.0f}",
        f"{p.wall_ms:.3f}",
        f"{p.busy_ms:.3f}",
        f"{p.busy_share:.0%}",
        f"{p.mean_kernel_us:.1f}",
        f"{p.min_kernel_us:.1f}",
        f"{p.floor_ms:.3f}",
        *(f"{p.class_ms.get(c, 0.0):.3f}" for c in CLASSES),
    ]


def where_time_goes(r: KernelRow) -> str:
    """One sentence: the run's kernels, the GPU's share of the wall, the floor, the leading classes."""
    p = r.profile
    total = sum(p.class_ms.values()) or 1.0
    lead = sorted(p.class_ms.items(), key=lambda kv: -kv[1])[:3]
    shares = ", ".join(f"{c} {ms / total:.0%}" for c, ms in lead if ms > 0)
    if p.busy_share < 0.5:
        why = "the GPU waits between kernels more than it works (launch and host cost)"
    elif p.floor_ms >= 0.5 * p.busy_ms:
        why = "the number of kernels sets the time (most are near the shortest)"
    else:
        why = f"the time is in {lead[0][0]} work"
    return (
        f"{r.model} ({r.layers}L-{r.heads}H), {r.how}: {p.kernels_per_run:.0f} kernels per run, GPU busy "
        f"{p.busy_ms:.2f} of {p.wall_ms:.2f} ms ({p.busy_share:.0%}), floor {p.kernels_per_run:.0f} x "
        f"{p.min_kernel_us:.1f} µs = {p.floor_ms:.2f} ms; GPU time {shares}: {why}."
    )


def headline_rows(rows: list[KernelRow]) -> list[KernelRow]:
    """Per architecture, the served configuration's row (model.gpu.onnx + CUDA graphs) or its first."""
    out: dict[str, KernelRow] = {}
    for r in rows:
        if r.arch not in out or (r.how == f"{GPU_FILE} + CUDA graphs" and out[r.arch].how != r.how):
            out[r.arch] = r
    return list(out.values())


def section_md(data: dict[str, Any], title: str = "## CUDA kernels per run") -> list[str]:
    """The report's section over kernels.json (rows as written by `main`)."""
    rows = [row_from_json(x) for x in data["rows"]]
    spec = data["spec"]
    lines = [
        title,
        "",
        f"Every kernel of {spec['runs']} runs at batch {spec['batch']} x seq {spec['seq']}, recorded by CUPTI "
        "(torch.profiler, CUDA activity) after 3 warm-up runs. *GPU busy*: time with a kernel running; "
        "*floor*: kernels per run x the shortest kernel. Operator classes: GPU ms per run.",
        "",
        "| " + " | ".join(HEAD + list(CLASSES)) + " |",
        "|" + "---|" * (len(HEAD) + len(CLASSES)),
        *("| " + " | ".join(cells(r)) + " |" for r in rows),
        "",
    ]
    return lines + [f"- {where_time_goes(r)}" for r in headline_rows(rows)]


def row_from_json(x: dict[str, Any]) -> KernelRow:
    fields = cupti.KernelProfile.__dataclass_fields__
    prof = cupti.KernelProfile(**{k: v for k, v in x.items() if k in fields})
    return KernelRow(x["model"], x["arch"], x["layers"], x["heads"], x["runtime"], x["how"], prof)


def load(folder: Path) -> dict[str, Any] | None:
    """A complete kernels.json in `folder`, or None."""
    return profile_runner.load(folder, KERNELS_JSON)
