"""The load tester's result files, written atomically after every point or search, and read back
by the report: one `Row` (a dict of column name to value) per measurement.

results.json  = {"meta": {machine, versions, provider(s), settings, manifests, notes}, "points": [rows]}
results.csv   = the sweep's rows, columns in `COLUMNS` order.
capacity.json = {"meta": ..., "rows": [one per model and shape], "ratios": [...], "probes": [...]}
capacity.csv  = the capacity rows, columns in `CAPACITY_COLUMNS` order.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from contract.atomic import write_json, write_text
from service.runtime import nvml

# one measurement: a sweep point or a capacity search, column name -> value
Row = dict[str, Any]

# which model, and the request shape: the first columns of the sweep's and the capacity search's rows
SHAPE_COLUMNS = ["model", "arch", "layers", "heads", "batch", "seq"]
COLUMNS = [
    "mode",
    "load",
    *SHAPE_COLUMNS,
    "concurrency",
    "rate",
    "provider",
    "variant",
    "requests",
    "errors",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "min_ms",
    "max_ms",
    "rps",
    "tokens_per_s",
    "window_s",
    "late_sends",
    "max_lag_ms",
    "achieved_rate",
    "server_queue_ms",
    "server_compute_ms",
    "server_batches",
    "server_rows_per_batch",
    "server_rejected",
    "client_procs",
    "client_cpu_us_per_req",
    "client_cpu_cores",
    "error_kinds",
    "note",
]

JSON_NAME = "results.json"
CSV_NAME = "results.csv"

CAPACITY_JSON_NAME = "capacity.json"
CAPACITY_CSV_NAME = "capacity.csv"
CAPACITY_COLUMNS = [
    *SHAPE_COLUMNS,
    "slo_p99_ms",
    "max_error_rate",
    "capacity_rps",
    "capacity_rows_per_s",
    "goodput_rps",
    "p50_ms",
    "p99_ms",
    "error_rate",
    "p50_c1_ms",
    "closed_c8_rps",
    "probes",
    "failed_above_rps",
    "status",
    "provider",
    "variant",
    "client_cpu_us_per_req",
    "accuracy",
]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """The GPUs' names for a result's machine record; empty without NVML."""
    host = nvml.probe()
    return [g.name for g in host.gpus if g.name] if host else []


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "gpus": gpu_names(),
        "platform": platform.platform(),
        "hostname": platform.node(),
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("headtohead", "onnxruntime-gpu", "onnxruntime", "numpy", "httpx", "fastapi", "uvicorn"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def to_csv(points: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns or COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for p in points:
        row = dict(p)
        if isinstance(row.get("error_kinds"), dict):
            row["error_kinds"] = ";".join(f"{k}={v}" for k, v in sorted(row["error_kinds"].items()))
        for k, v in row.items():
            if isinstance(v, float):
                row[k] = f"{v:.6g}"
        w.writerow(row)
    return buf.getvalue()


def write(out: Path, meta: dict[str, Any], points: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / JSON_NAME, {"meta": meta, "points": points})
    write_text(out / CSV_NAME, to_csv(points))


def load(path: Path) -> dict[str, Any]:
    """Read results.json from a results folder (or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / JSON_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "points" not in data:
        raise ValueError(f"{path} is not a loadtest results file (no 'points')")
    data.setdefault("meta", {})
    return data


def write_capacity(out: Path, data: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CAPACITY_JSON_NAME, data)
    write_text(out / CAPACITY_CSV_NAME, to_csv(data["rows"], CAPACITY_COLUMNS))


def load_capacity(results_dir: Path) -> dict[str, Any] | None:
    """capacity.json from a results folder, or None when there is none."""
    path = Path(results_dir) / CAPACITY_JSON_NAME
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "rows" not in data:
        raise ValueError(f"{path} is not a capacity results file (no 'rows')")
    return data
