"""One NVML probe (nvidia-ml-py) for every caller that asks what GPUs a host has.

The service asks how many (to choose CUDA), the load tester records their names with its
results, the GPU report names the card, driver and memory. Each asked NVML in its own way;
this module is the one place that initialises it, reads the facts, and shuts it down. It
imports neither onnxruntime nor torch, so any program may use it, GPU or not.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gpu:
    name: str | None
    memory_gib: float | None


@dataclass(frozen=True)
class Host:
    """What NVML reports; a field NVML could not read is None rather than failing the probe."""

    driver: str | None
    cuda_driver: str | None  # e.g. "12.4", the CUDA version the driver supports
    gpus: tuple[Gpu, ...]

    @property
    def count(self) -> int:
        return len(self.gpus)


def _text(v: Any) -> str:
    """Older nvidia-ml-py releases return bytes, newer ones str."""
    return v.decode() if isinstance(v, bytes) else str(v)


def _maybe(read: Callable[[], T]) -> T | None:
    """One NVML query, None when it fails: a query a driver lacks must not hide the count."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - NVML raises its own error types, all meaning "not known"
        log.debug("an NVML query failed, its value left unknown: %s: %s", type(exc).__name__, exc)
        return None


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def _gpu(nv: Any, index: int) -> Gpu:
    h = _maybe(lambda: nv.nvmlDeviceGetHandleByIndex(index))
    if h is None:
        return Gpu(None, None)
    name = _maybe(lambda: _text(nv.nvmlDeviceGetName(h)))
    memory = _maybe(lambda: round(nv.nvmlDeviceGetMemoryInfo(h).total / 2**30, 1))
    return Gpu(name, memory)


@contextlib.contextmanager
def _nvml() -> Iterator[Any]:
    """pynvml initialised for the block, shut down after it; None without a driver or library."""
    try:
        # optional: a host without the library or the driver has no GPU as far as we can tell
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no library, no driver: no GPU as far as we can tell
        log.debug("NVML unavailable: %s: %s", type(exc).__name__, exc)
        yield None
        return
    try:
        yield pynvml
    finally:
        _maybe(pynvml.nvmlShutdown)


def probe() -> Host | None:
    """The host's GPUs through NVML, or None without a driver or without nvidia-ml-py."""
    with _nvml() as nv:
        if nv is None:
            return None
        try:
            gpus = tuple(_gpu(nv, i) for i in range(int(nv.nvmlDeviceGetCount())))
            return Host(
                driver=_maybe(lambda: _text(nv.nvmlSystemGetDriverVersion())),
                cuda_driver=_maybe(lambda: _cuda_version(int(nv.nvmlSystemGetCudaDriverVersion()))),
                gpus=gpus,
            )
        except Exception as exc:  # noqa: BLE001 - a count NVML cannot give: treat as no GPU
            log.warning("NVML could not count GPUs (%s: %s): reporting none", type(exc).__name__, exc)
            return None


def gpu_names() -> list[str]:
    """The GPUs' names for a result's machine record (contract.results.machine); empty without NVML."""
    host = probe()
    return [g.name for g in host.gpus if g.name] if host else []


def process_memory(index: int, pid: int | None = None) -> int | None:
    """Device memory bytes process `pid` (this one by default) holds on GPU `index`, or None when
    NVML cannot say (no driver, or a container whose process ids NVML does not see)."""
    pid = os.getpid() if pid is None else pid
    with _nvml() as nv:
        if nv is None:
            return None
        procs = _maybe(lambda: nv.nvmlDeviceGetComputeRunningProcesses(nv.nvmlDeviceGetHandleByIndex(index)))
        used = next((p.usedGpuMemory for p in procs or [] if p.pid == pid), None)
        return int(used) if used is not None else None


@dataclass(frozen=True)
class Usage:
    """One GPU's load now (the service's /metrics)."""

    utilization: float  # 0..1, NVML's sampled share of time a kernel ran
    memory_used: int  # bytes
    memory_total: int  # bytes


def usage() -> tuple[Usage, ...] | None:
    """Each GPU's utilisation and memory now, or None without a driver or nvidia-ml-py. A query
    that fails raises: the caller reports it (unlike the probe, a partial answer helps nobody)."""
    with _nvml() as nv:
        if nv is None:
            return None
        out = []
        for i in range(int(nv.nvmlDeviceGetCount())):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            rates = nv.nvmlDeviceGetUtilizationRates(h)
            out.append(Usage(rates.gpu / 100.0, int(mem.used), int(mem.total)))
        return tuple(out)
