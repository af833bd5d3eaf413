"""The one NVML probe and the three views of it (service GPU count, load-test machine record,
GPU report facts), against a stand-in pynvml so they run on any host."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from loadtest.gpu import preflight
from service import metrics
from service.runtime import nvml
from service.runtime import session as runtime


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
    assert nvml.gpu_names() == ["GPU 0", "GPU 1"]
    assert preflight.gpu_facts() == {
        "name": "GPU 0",
        "driver": "550.54",
        "cuda_driver": "12.4",
        "count": 2,
        "memory_gib": 80.0,
    }


def test_no_nvml_means_no_gpu(fake) -> None:
    fake(fail={"nvmlInit"})
    assert nvml.probe() is None
    assert runtime.gpu_count() == 0 and nvml.gpu_names() == [] and preflight.gpu_facts() is None


def test_zero_devices(fake) -> None:
    fake(count=0)
    assert nvml.probe() == nvml.Host("550.54", "12.4", ())
    assert runtime.gpu_count() == 0 and nvml.gpu_names() == [] and preflight.gpu_facts() is None


def test_a_missing_detail_keeps_the_count_but_not_the_report(fake) -> None:
    """A driver without one query still has GPUs (the service may use CUDA), but the GPU report,
    which names the card it measured, refuses rather than write an incomplete record."""
    m = fake(fail={"nvmlSystemGetCudaDriverVersion", "nvmlDeviceGetName"})
    host = nvml.probe()
    assert host is not None and host.cuda_driver is None and host.gpus[0] == nvml.Gpu(None, 80.0)
    assert runtime.gpu_count() == 2 and nvml.gpu_names() == []
    assert preflight.gpu_facts() is None
    assert m.calls[-1] == "nvmlShutdown"


def test_a_failing_count_is_no_gpu(fake) -> None:
    m = fake(fail={"nvmlDeviceGetCount"})
    assert nvml.probe() is None and runtime.gpu_count() == 0
    assert m.calls[-1] == "nvmlShutdown"


def test_usage_reads_each_gpu_and_raises_what_nvml_raises(fake) -> None:
    m = fake(count=2)
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=(h + 1) << 30, total=80 << 30)
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=25 * (h + 1))
    assert nvml.usage() == (nvml.Usage(0.25, 1 << 30, 80 << 30), nvml.Usage(0.5, 2 << 30, 80 << 30))
    m.nvmlDeviceGetUtilizationRates = lambda h: (_ for _ in ()).throw(RuntimeError("NVML_ERROR_GPU_IS_LOST"))
    with pytest.raises(RuntimeError, match="GPU_IS_LOST"):
        nvml.usage()
    assert m.calls[-1] == "nvmlShutdown"  # the session is closed all the same


def test_gpu_metrics_log_a_failing_read_once_and_keep_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from service.metrics import GpuCollector

    answers: list[Any] = [RuntimeError("NVML_ERROR_UNKNOWN"), RuntimeError("again"), (nvml.Usage(0.5, 3, 8),)]

    def read() -> Any:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    registry = CollectorRegistry()
    registry.register(GpuCollector(read))
    assert b"h2h_gpu" not in generate_latest(registry)  # the scrape itself still answers
    assert b"h2h_gpu" not in generate_latest(registry)
    warnings = [r for r in caplog.records if r.name == metrics.__name__]
    assert len(warnings) == 1 and warnings[0].exc_info is not None
    assert "NVML_ERROR_UNKNOWN" in str(warnings[0].exc_info[1])
    text = generate_latest(registry).decode()
    assert (
        'h2h_gpu_utilization_ratio{gpu="0"} 0.5' in text and 'h2h_gpu_memory_total_bytes{gpu="0"} 8.0' in text
    )


def test_gpu_metrics_say_once_that_there_is_no_nvml(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from prometheus_client import CollectorRegistry, generate_latest

    from service.metrics import GpuCollector

    caplog.set_level(logging.INFO, metrics.__name__)
    registry = CollectorRegistry()
    registry.register(GpuCollector(lambda: None))
    for _ in range(3):
        assert b"h2h_gpu" not in generate_latest(registry)
    assert [r.getMessage() for r in caplog.records if r.name == metrics.__name__] == [
        "GPU metrics: NVML is not available on this host; no GPU series"
    ]


def test_a_count_nvml_cannot_give_is_no_gpu_and_says_why_once(fake, caplog) -> None:
    fake(fail={"nvmlDeviceGetCount"})
    with caplog.at_level("DEBUG", logger=nvml.__name__):
        assert nvml.probe() is None
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "nvmlDeviceGetCount" in warnings[0].getMessage()


def test_a_query_the_driver_lacks_is_logged_and_left_unknown(fake, caplog) -> None:
    fake(fail={"nvmlDeviceGetName"})
    with caplog.at_level("DEBUG", logger=nvml.__name__):
        host = nvml.probe()
    assert host is not None and host.count == 2 and host.gpus[0].name is None
    assert any("nvmlDeviceGetName" in r.getMessage() for r in caplog.records)
