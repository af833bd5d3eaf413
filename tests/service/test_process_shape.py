"""The process shape: what the settings ask, else one process on a CPU host with few cores and the
engine process on a GPU host or a CPU host with more cores (docs/benchmarks.md, "Process shape")."""

from __future__ import annotations

import pytest

from service import settings as settings_module
from service.runtime import nvml
from service.settings import ONE_PROCESS_MAX_CORES, ServiceSettings

GPU_HOST = nvml.Host(driver="1", cuda_driver="13.0", gpus=(object(),))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cores", "host", "provider", "one"),
    [
        (ONE_PROCESS_MAX_CORES, None, "auto", True),
        (1, None, "cpu", True),
        (ONE_PROCESS_MAX_CORES + 1, None, "auto", False),
        (ONE_PROCESS_MAX_CORES, GPU_HOST, "auto", False),
        (ONE_PROCESS_MAX_CORES, GPU_HOST, "cpu", True),
        (ONE_PROCESS_MAX_CORES, None, "cuda", False),
    ],
)
def test_the_default_shape_follows_the_host(
    monkeypatch: pytest.MonkeyPatch, cores: int, host: nvml.Host | None, provider: str, one: bool
) -> None:
    monkeypatch.setattr(settings_module, "usable_cores", lambda: cores)
    monkeypatch.setattr(nvml, "probe", lambda: host)
    assert ServiceSettings(provider=provider).one_process() is one


def test_the_settings_decide_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "usable_cores", lambda: 1)
    monkeypatch.setattr(nvml, "probe", lambda: None)
    assert ServiceSettings(single_process=False).one_process() is False
    assert ServiceSettings(fronts=2).one_process() is False, "fronts asked for: the engine process"
    monkeypatch.setattr(settings_module, "usable_cores", lambda: 64)
    assert ServiceSettings(single_process=True).one_process() is True
