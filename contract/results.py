"""The measurement result files, written atomically after every point or search, and read back
by the load report: one typed row per measurement (`SweepRow`, `CapacityRow`), whose fields are the
files' columns, with the unit in the name (`_ms`, `_s`, `_rps`, `_per_s`; `rate` and
`achieved_rate` are requests per second).

results.json  = {"meta": {machine, versions, provider(s), settings, manifests, notes}, "points": [SweepRow]}
results.csv   = the sweep's rows, columns in `SweepRow.columns()` order.
capacity.json = {"meta": ..., "rows": [CapacityRow], "ratios": [CapacityRatio], "probes": [ProbeRow],
                 "rounds": [RoundRow], "ceiling": [CapacityRow]}
capacity.csv  = the capacity rows, columns in `CapacityRow.columns()` order.

Written by the load tester (sweeps, capacity), the PyTorch reference (torchbench.torch_ref) and
the training-step sweep (models.train_cost), all in the in-process sweep's row format; read by
`python -m loadtest report`. Files written before a column existed still read: a missing column
is None.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contract.atomic import write_json, write_text
from contract.cli import validation_message


class ResultRow(BaseModel):
    """A row of a result file. Unknown columns (from a newer writer) are ignored; CSV's empty cells
    read as None and its numbers are parsed by the field types."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    LEAD: ClassVar[tuple[str, ...]] = ()  # columns written before the shape's

    @model_validator(mode="before")
    @classmethod
    def _empty_is_none(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: (None if v == "" else v) for k, v in data.items()}
        return data

    @classmethod
    def columns(cls) -> list[str]:
        """The file's column order: the lead columns, then the rest in field order."""
        return [*cls.LEAD, *(f for f in cls.model_fields if f not in cls.LEAD)]

    @classmethod
    def of(cls, row: Self | Mapping[str, Any]) -> Self:
        """A row as given, or one validated from a mapping of column -> value."""
        return row if isinstance(row, cls) else cls.model_validate(row)


class ShapeRow(ResultRow):
    """Which model, and the request shape: the first columns of a sweep point and a capacity search."""

    model: str
    arch: str
    layers: int
    heads: int
    batch: int
    seq: int


class SweepRow(ShapeRow):
    """One sweep point: in-process timing, or HTTP load at one concurrency or rate."""

    LEAD = ("mode", "load")

    mode: Literal["inproc", "http"]
    load: Literal["inproc", "closed", "open"]
    concurrency: int = 1
    rate: float | None = None  # offered requests/s of an open loop
    provider: str | None = None
    variant: str | None = None
    requests: int = 0  # answered (in-process: timed runs)
    errors: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    blocks: int | None = None  # in-process points timed as blocks of runs, each giving a p50
    p50_lo_ms: float | None = None  # the lowest and highest block p50: the spread of the repeats
    p50_hi_ms: float | None = None
    rps: float | None = None
    tokens_per_s: float | None = None
    window_s: float | None = None
    late_sends: int | None = None
    max_lag_ms: float | None = None
    achieved_rate: float | None = None  # requests/s actually sent by an open loop
    server_queue_ms: float | None = None
    server_compute_ms: float | None = None
    server_batches: int | None = None
    server_rows_per_batch: float | None = None
    server_rejected: int | None = None
    client_procs: int | None = None
    client_cpu_us_per_req: float | None = None
    client_cpu_cores: float | None = None
    error_kinds: dict[str, int] | None = None
    note: str | None = None

    @field_validator("error_kinds", mode="before")
    @classmethod
    def _kinds_from_csv(cls, v: Any) -> Any:
        """CSV holds "ConnectError=3;ReadTimeout=1"."""
        if isinstance(v, str):
            return dict(kv.split("=", 1) for kv in v.split(";") if kv)
        return v


class CapacityRow(ShapeRow):
    """One capacity search: the highest open-loop rate whose p99 met the SLO, for one model and shape."""

    slo_p99_ms: float
    max_error_rate: float
    capacity_rps: float
    capacity_rows_per_s: float
    goodput_rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    error_rate: float | None = None
    p50_c1_ms: float | None = None  # lone requests (closed loop, concurrency 1)
    closed_c8_rps: float | None = None  # closed loop at concurrency 8, where the search starts
    probes: int = 0
    failed_above_rps: float | None = None  # lowest failing rate (None: every probe passed)
    status: str = ""
    provider: str | None = None
    variant: str | None = None
    client_cpu_us_per_req: float | None = None
    accuracy: float | None = None  # test accuracy from the model's manifest
    # repeated searches (loadtest.capacity.rounds): capacity_rps is the median over rounds,
    # these its range; `probes` counts every window behind it, all rounds together
    rounds: int = 1
    capacity_lo_rps: float | None = None
    capacity_hi_rps: float | None = None
    stable: bool | None = None  # the last rounds agreed within the stability rule's share
    p50_c1_lo_ms: float | None = None  # range of the lone-request p50 over rounds
    p50_c1_hi_ms: float | None = None
    ceiling_rps: float | None = None  # the service's own ceiling at this shape (null engine), median
    ceiling_share: float | None = None  # capacity_rps / ceiling_rps
    set_by_service: bool | None = None  # capacity within the noise of that ceiling


class CapacityRatio(BaseModel):
    """SHA capacity over MHA capacity at one shape."""

    batch: int
    seq: int
    mha: str
    sha: str
    mha_rps: float
    sha_rps: float
    sha_over_mha: float | None
    # over paired rounds (loadtest.capacity.rounds.capacity_ratio): the union of the rounds'
    # bracket intervals; beyond noise when it excludes 1
    sha_over_mha_lo: float | None = None
    sha_over_mha_hi: float | None = None
    rounds: int = 1
    p50_sha_over_mha: float | None = None  # lone requests at this shape, median over paired rounds
    p50_sha_over_mha_lo: float | None = None
    p50_sha_over_mha_hi: float | None = None


@dataclass(frozen=True)
class RatioInterval:
    """A ratio with its interval (loadtest.capacity.rounds); `beyond_noise` when the interval clears parity by more than
    `margin` (1 / (1 + margin) to 1 + margin: for capacity, the search's own resolution)."""

    value: float
    lo: float
    hi: float
    n: int  # paired rounds behind it
    margin: float = 0.0

    @property
    def beyond_noise(self) -> bool:
        return self.n >= 2 and (self.hi < 1.0 / (1.0 + self.margin) or self.lo > 1.0 + self.margin)

    def words(self) -> str:
        """'0.84x [0.71, 0.97] over 3 paired rounds'"""
        hi = "inf" if math.isinf(self.hi) else f"{self.hi:.2f}"
        return f"{self.value:.2f}x [{self.lo:.2f}, {hi}] over {self.n} paired round{'s' * (self.n != 1)}"


class RoundRow(BaseModel):
    """One search of one round (`capacity.rounds.Round` with its model and shape)."""

    model: str
    batch: int
    seq: int
    round: int
    capacity_rps: float
    failed_above_rps: float | None = None
    p50_c1_ms: float | None = None
    windows: int = 0


class ProbeRow(BaseModel):
    """One probe of a capacity search (`capacity.search.Probe` with its model and shape)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: str
    batch: int
    seq: int
    rate: float
    passed: bool
    reason: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    ok: int = 0
    errors: int = 0
    error_rate: float = 0.0
    goodput_rps: float = 0.0
    late_sends: int = 0
    duration_s: float = 0.0
    client_cpu_us_per_req: float | None = None
    error_kinds: dict[str, int] = Field(default_factory=dict)
    windows: int = 1
    passes: int | None = None
    round: int = 0


class Machine(BaseModel):
    """Where a result was measured."""

    model_config = ConfigDict(extra="allow")

    cpu: str | None = None
    cores: int | None = None
    affinity_cores: int | None = None
    gpus: list[str] = Field(default_factory=list)
    platform: str | None = None
    hostname: str | None = None


class ModelMeta(BaseModel):
    """A measured model as the run saw it (the service's provider and variant over HTTP)."""

    model_config = ConfigDict(extra="allow")

    arch: str = ""
    layers: int | None = None
    heads: int | None = None
    max_sequence_length: int | None = None
    server_provider: str | None = None
    server_variant: str | None = None
    server_max_batch: int | None = None


class ResultMeta(BaseModel):
    """A result file's `meta`: what was run, where, with which versions. Keys a writer adds beyond
    these (the PyTorch reference's `reference`) are kept."""

    model_config = ConfigDict(extra="allow")

    created: str | None = None
    command: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    modes: list[str] = Field(default_factory=list)
    duration_s: float | None = None  # per HTTP point (the capacity search: per probe, at least)
    elapsed_s: float | None = None  # set when the run finished
    machine: Machine = Field(default_factory=Machine)
    versions: dict[str, str] = Field(default_factory=dict)
    models: dict[str, ModelMeta] = Field(default_factory=dict)
    manifests: dict[str, dict[str, Any]] = Field(default_factory=dict)
    providers: dict[str, dict[str, str | None]] = Field(default_factory=dict)  # mode -> model -> provider
    service: dict[str, Any] | None = None
    notes: list[str] = Field(default_factory=list)


class SweepResults(BaseModel):
    """results.json."""

    meta: ResultMeta = Field(default_factory=ResultMeta)
    points: list[SweepRow]


class CapacityResults(BaseModel):
    """capacity.json."""

    meta: ResultMeta = Field(default_factory=ResultMeta)
    rows: list[CapacityRow]
    ratios: list[CapacityRatio] = Field(default_factory=list)
    probes: list[ProbeRow] = Field(default_factory=list)
    rounds: list[RoundRow] = Field(default_factory=list)
    ceiling: list[CapacityRow] = Field(default_factory=list)  # the null-engine service, per shape


QUANTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


def summarize(seconds: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """A row's latency columns: count, mean, min, max and p50/p95/p99 in ms (linear
    interpolation); None when empty."""
    a = np.asarray(seconds, dtype=np.float64)
    out: dict[str, float | int | None] = {"count": int(a.size)}
    if a.size == 0:
        out.update({f"{k}_ms": None for k in ("p50", "p95", "p99", "mean", "min", "max")})
        return out
    ms = a * 1e3
    for name, q in QUANTILES.items():
        out[f"{name}_ms"] = float(np.percentile(ms, q))
    out["mean_ms"] = float(ms.mean())
    out["min_ms"] = float(ms.min())
    out["max_ms"] = float(ms.max())
    return out


JSON_NAME = "results.json"
CSV_NAME = "results.csv"
CAPACITY_JSON_NAME = "capacity.json"
CAPACITY_CSV_NAME = "capacity.csv"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(gpus: Iterable[str] = ()) -> dict[str, Any]:
    """This machine, as `Machine` reads it (a plain dict: benchmarks write it into their own JSON),
    with the GPU names the caller found (NVML's in the load tester, torch's in the training sweep)."""
    return Machine(
        cpu=cpu_model(),
        cores=os.cpu_count(),
        affinity_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        gpus=list(gpus),
        platform=platform.platform(),
        hostname=platform.node(),
    ).model_dump()


def run_meta(
    settings: BaseModel, models: Mapping[str, Any], notes: Iterable[str], gpus: Iterable[str], **more: Any
) -> ResultMeta:
    """The meta of a run starting now on this machine (with `gpus`, its GPUs' names): its settings,
    and each model's facts and manifest (from objects with ModelMeta's attributes and a
    `manifest`: loadtest.models.ModelInfo)."""
    return ResultMeta(
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=" ".join(sys.argv),
        settings=settings.model_dump(mode="json"),
        machine=machine(gpus),
        versions=versions(),
        models={n: ModelMeta.model_validate(i, from_attributes=True) for n, i in models.items()},
        manifests={n: i.manifest for n, i in models.items()},
        notes=list(notes),
        **more,
    )


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("headtohead", "onnxruntime-gpu", "onnxruntime", "numpy", "httpx", "fastapi", "uvicorn"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def to_csv(rows: Iterable[ResultRow], kind: type[ResultRow] = SweepRow) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=kind.columns(), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        cells = r.model_dump()
        if isinstance(cells.get("error_kinds"), dict):
            cells["error_kinds"] = ";".join(f"{k}={v}" for k, v in sorted(cells["error_kinds"].items()))
        w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in cells.items()})
    return buf.getvalue()


def read_csv(path: Path, kind: type[ResultRow] = SweepRow) -> list[Any]:
    """Rows of a results.csv (or capacity.csv with `kind=CapacityRow`)."""
    with open(path, encoding="utf-8", newline="") as f:
        return [kind.model_validate(r) for r in csv.DictReader(f)]


def write(
    out: Path, meta: ResultMeta | Mapping[str, Any], points: Iterable[SweepRow | Mapping[str, Any]]
) -> None:
    """results.json and results.csv; meta and rows given as mappings are checked first."""
    data = SweepResults.model_validate({"meta": meta, "points": [SweepRow.of(p) for p in points]})
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / JSON_NAME, data.model_dump(mode="json"))
    write_text(out / CSV_NAME, to_csv(data.points))


def _read(path: Path, kind: type[SweepResults] | type[CapacityResults], key: str, what: str) -> Any:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or key not in data:
        raise ValueError(f"{path} is not a {what} file (no {key!r})")
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: {validation_message(exc)}") from None


def load(path: Path) -> SweepResults:
    """Read results.json from a results folder (or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / JSON_NAME
    return _read(path, SweepResults, "points", "loadtest results")


def write_capacity(out: Path, data: CapacityResults) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CAPACITY_JSON_NAME, data.model_dump(mode="json"))
    write_text(out / CAPACITY_CSV_NAME, to_csv(data.rows, CapacityRow))


def load_capacity(results_dir: Path) -> CapacityResults | None:
    """capacity.json from a results folder, or None when there is none."""
    path = Path(results_dir) / CAPACITY_JSON_NAME
    if not path.is_file():
        return None
    return _read(path, CapacityResults, "rows", "capacity results")
