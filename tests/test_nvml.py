"""The one NVML probe and the three views of it (service GPU count, load-test machine record,
GPU report facts), against a stand-in pynvml so they run on any host."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from test_loadtest_gpu_report import gpu_report_module

from loadtest import results
from service import nvml, runtime


def _fake_pynvml(count: int = 2, *, fail: set[str] = frozenset(), bytes_names: bool = False) -> Any:
    """A pynvml whose functions named in `fail` raise, the way a driver without them does."""
    calls: list[str] = []

    def fn(name: str, value: Any):
        def f(*_a: Any) -> Any:
            calls.append(name)
            if name in fail:
                raise RuntimeError(name)
            return value(*_a) if callable(value) else value

        return f

    m = types.SimpleNamespace(calls=calls)
    m.nvmlInit = fn("nvmlInit", None)
    m.nvmlShutdown = fn("nvmlShutdown", None)
    m.nvmlDeviceGetCount = fn("nvmlDeviceGetCount", count)
    m.nvmlDeviceGetHandleByIndex = fn("nvmlDeviceGetHandleByIndex", lambda i: i)
    name = (lambda h: f"GPU {h}".encode()) if bytes_names else (lambda h: f"GPU {h}")
    m.nvmlDeviceGetName = fn("nvmlDeviceGetName", name)
    m.nvmlDeviceGetMemoryInfo = fn("nvmlDeviceGetMemoryInfo", types.SimpleNamespace(total=80 * 2**30))
    m.nvmlSystemGetDriverVersion = fn("nvmlSystemGetDriverVersion", "550.54")
    m.nvmlSystemGetCudaDriverVersion = fn("nvmlSystemGetCudaDriverVersion", 12040)
    return m


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    def install(**kw: Any) -> Any:
        m = _fake_pynvml(**kw)
        monkeypatch.setitem(sys.modules, "pynvml", m)
        return m

    return install


def test_process_memory_is_this_process_entry_or_none(fake) -> None:
    procs = [
        types.SimpleNamespace(pid=1, usedGpuMemory=7),
        types.SimpleNamespace(pid=42, usedGpuMemory=3 << 30),
    ]
    m = fake()
    m.nvmlDeviceGetComputeRunningProcesses = lambda handle: procs
    assert nvml.process_memory(0, pid=42) == 3 << 30 and m.calls[-1] == "nvmlShutdown"
    assert nvml.process_memory(0, pid=99) is None  # a pid NVML does not list (another PID namespace)
    m.nvmlDeviceGetComputeRunningProcesses = lambda handle: [
        types.SimpleNamespace(pid=42, usedGpuMemory=None)
    ]
    assert nvml.process_memory(0, pid=42) is None  # listed, usage not reported (some drivers)
    fake(fail={"nvmlInit"})
    assert nvml.process_memory(0) is None


@pytest.mark.parametrize("bytes_names", [False, True])
def test_probe_reads_every_gpu_and_shuts_nvml_down(fake, bytes_names: bool) -> None:
    m = fake(bytes_names=bytes_names)
    host = nvml.probe()
    assert host == nvml.Host("550.54", "12.4", (nvml.Gpu("GPU 0", 80.0), nvml.Gpu("GPU 1", 80.0)))
    assert host.count == 2 and m.calls[0] == "nvmlInit" and m.calls[-1] == "nvmlShutdown"
    assert runtime.gpu_count() == 2
    assert results.gpu_names() == ["GPU 0", "GPU 1"]
    assert gpu_report_module().gpu_facts() == {
        "name": "GPU 0",
        "driver": "550.54",
        "cuda_driver": "12.4",
        "count": 2,
        "memory_gib": 80.0,
    }


def test_no_nvml_means_no_gpu(fake) -> None:
    fake(fail={"nvmlInit"})
    assert nvml.probe() is None
    assert runtime.gpu_count() == 0 and results.gpu_names() == [] and gpu_report_module().gpu_facts() is None


def test_zero_devices(fake) -> None:
    fake(count=0)
    assert nvml.probe() == nvml.Host("550.54", "12.4", ())
    assert runtime.gpu_count() == 0 and results.gpu_names() == [] and gpu_report_module().gpu_facts() is None


def test_a_missing_detail_keeps_the_count_but_not_the_report(fake) -> None:
    """A driver without one query still has GPUs (the service may use CUDA), but the GPU report,
    which names the card it measured, refuses rather than write an incomplete record."""
    m = fake(fail={"nvmlSystemGetCudaDriverVersion", "nvmlDeviceGetName"})
    host = nvml.probe()
    assert host is not None and host.cuda_driver is None and host.gpus[0] == nvml.Gpu(None, 80.0)
    assert runtime.gpu_count() == 2 and results.gpu_names() == []
    assert gpu_report_module().gpu_facts() is None
    assert m.calls[-1] == "nvmlShutdown"


def test_a_failing_count_is_no_gpu(fake) -> None:
    m = fake(fail={"nvmlDeviceGetCount"})
    assert nvml.probe() is None and runtime.gpu_count() == 0
    assert m.calls[-1] == "nvmlShutdown"
