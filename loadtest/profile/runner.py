"""Profile one shape through each model (and variant) with ONNX Runtime's profiler on.

Each model gets its own session, built by the service's runtime (same provider choice, options
and, on CUDA, IO binding with outputs left on the device), so the profile describes the run the
service and the in-process sweep make. Warm-up runs are profiled too (the profiler cannot start
later) and dropped when the trace is read.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contract import results
from contract.atomic import write_json
from contract.manifest import FP32_FILE, load_manifest, verify_variant
from loadtest.models import repo_models, resolve
from loadtest.profile import trace
from loadtest.sweep.inproc import random_batch
from service.runtime import nvml
from service.runtime.config import RuntimeConfig
from service.runtime.session import OrtModel

JSON_NAME = "profile.json"
RATIO_KEYS = ("wall_ms", "run_ms", "nodes_per_run", "node_ms", "gap_ms")


@dataclass(frozen=True)
class ProfileSpec:
    """What to profile: the models of `repo` (all when `models` is empty), each in `variants`."""

    repo: Path
    models: tuple[str, ...] = ()
    variants: tuple[str, ...] = (FP32_FILE,)
    provider: str = "auto"
    batch: int = 1
    seq: int = 16
    runs: int = 20
    warmup: int = 3
    seed: int = 0
    notes: list[str] = field(default_factory=list)


def profile_variant(
    model_dir: Path, manifest: Any, variant: str, spec: ProfileSpec, tmp: Path
) -> dict[str, Any]:
    """One session with the profiler on: warm-up, `spec.runs` timed runs, the trace summarised."""
    path = verify_variant(model_dir, manifest, variant)
    settings = RuntimeConfig(provider=spec.provider, cuda_graph=False)
    model = OrtModel(path, settings, profile_prefix=str(tmp / f"{model_dir.name}-{variant}"))
    ids, mask = random_batch(spec.batch, spec.seq, manifest.vocab_size, np.random.default_rng(spec.seed))
    run = model.device_runner(ids, mask)
    walls = []
    for i in range(spec.warmup + spec.runs):
        t0 = time.perf_counter()
        run()
        if i >= spec.warmup:
            walls.append(time.perf_counter() - t0)
    trace_file = Path(model.session.end_profiling())
    events = json.loads(trace_file.read_text(encoding="utf-8"))
    trace_file.unlink(missing_ok=True)
    summary = trace.summarize(events, spec.warmup)
    return {
        "model": model_dir.name,
        "arch": manifest.arch,
        "layers": manifest.layers,
        "heads": manifest.heads,
        "variant": variant,
        "provider": model.provider,
        "batch": spec.batch,
        "seq": spec.seq,
        "wall_ms": statistics.fmean(walls) * 1e3,
        **summary,
    }


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SHA over MHA per variant (the first model of each arch), for each of RATIO_KEYS."""
    out = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        pair = {r["arch"]: r for r in reversed(rows) if r["variant"] == variant}
        if {"mha", "sha"} <= set(pair):
            m, s = pair["mha"], pair["sha"]
            out.append(
                {
                    "variant": variant,
                    "mha": m["model"],
                    "sha": s["model"],
                    **{k: (s[k] / m[k] if m[k] else None) for k in RATIO_KEYS},
                }
            )
    return out


def profile(spec: ProfileSpec) -> dict[str, Any]:
    """Every model x variant of `spec` profiled; variants a model lacks are noted and skipped."""
    available = repo_models(spec.repo)
    names = resolve(list(spec.models), available, str(spec.repo)) if spec.models else list(available)
    rows, notes = [], list(spec.notes)
    with tempfile.TemporaryDirectory(prefix="h2h-profile-") as tmp:
        for name in names:
            model_dir = spec.repo / name
            manifest = load_manifest(model_dir)
            for variant in spec.variants:
                if variant not in manifest.variants:
                    notes.append(f"{name} has no {variant}: skipped")
                    continue
                rows.append(profile_variant(model_dir, manifest, variant, spec, Path(tmp)))
    return {
        "complete": True,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "spec": {k: v for k, v in asdict(spec).items() if k != "notes"} | {"repo": str(spec.repo)},
        "machine": results.machine(nvml.gpu_names()),
        "versions": results.versions(),
        "rows": rows,
        "ratios": ratios(rows),
        "notes": notes,
    }


def write(out: Path, data: dict[str, Any]) -> Path:
    """profile.json in `out`, atomically (a reader sees the old file or the whole new one)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / JSON_NAME, data)
    return out / JSON_NAME


def load(folder: Path, name: str = JSON_NAME) -> dict[str, Any] | None:
    """A complete profile.json (or `name`: the kernel profile's file) in `folder`, or None (absent,
    unreadable, or cut short)."""
    try:
        data = json.loads((Path(folder) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("complete") is True else None
