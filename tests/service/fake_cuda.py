"""CUDA mocked at ONNX Runtime's boundary only, for CPU tests of the CUDA-graph path.

`FakeCudaSession` is a real CPU InferenceSession behind the calls the CUDA path makes (provider
list, `io_binding`, `run_with_iobinding` with a `gpu_graph_id`), so answers are the real model's;
it records every run's graph id and input shape, and can fail at one shape as a capture would.
Device buffers (`service.cuda_graphs.device_buffer`) become numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from contract import tensors
from service.runtime import cuda_graphs
from service.runtime import session as runtime

REAL_SESSION = ort.InferenceSession


class FakeDeviceValue:
    """An OrtValue "on the device": a numpy array written in place like ORT's."""

    def __init__(self, shape: list[int], dtype: type) -> None:
        self.array = np.zeros(shape, dtype=dtype)

    def update_inplace(self, values: np.ndarray) -> None:
        assert values.shape == self.array.shape and values.dtype == self.array.dtype
        self.array[...] = values


class FakeBinding:
    def __init__(self) -> None:
        self.inputs: dict[str, FakeDeviceValue] = {}
        self.outputs: dict[str, FakeDeviceValue] = {}

    def bind_ortvalue_input(self, name: str, value: FakeDeviceValue) -> None:
        self.inputs[name] = value

    def bind_ortvalue_output(self, name: str, value: FakeDeviceValue) -> None:
        self.outputs[name] = value

    def copy_outputs_to_cpu(self) -> list[np.ndarray]:
        return [v.array.copy() for v in self.outputs.values()]


@dataclass
class Cuda:
    """What the fake CUDA sessions saw: per model file name, its sessions' runs."""

    fail_at: dict[str, tuple[int, int]] = field(default_factory=dict)  # model dir name -> shape
    sessions: list[FakeCudaSession] = field(default_factory=list)
    on_run: Any = None  # called before each run (a test's probe)

    def runs(self, model: str) -> list[tuple[str, tuple[int, int]]]:
        return [r for s in self.sessions if s.model == model for r in s.runs]


class FakeCudaSession:
    def __init__(self, cuda: Cuda, path: str, sess_options: Any = None, **kw: Any) -> None:
        self.cuda = cuda
        self.model = __import__("pathlib").Path(path).parent.name
        self.provider_options = kw.get("provider_options")
        self.providers = list(kw.get("providers") or [runtime.CPU])  # CUDA "works" when asked for
        self.cpu = REAL_SESSION(path, sess_options=sess_options, providers=[runtime.CPU])
        self.runs: list[tuple[str, tuple[int, int]]] = []

    def get_providers(self) -> list[str]:
        return self.providers

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.cpu.run(names, feeds)

    def get_inputs(self) -> list[Any]:
        return self.cpu.get_inputs()

    def get_outputs(self) -> list[Any]:
        return self.cpu.get_outputs()

    def io_binding(self) -> FakeBinding:
        return FakeBinding()

    def run_with_iobinding(self, binding: FakeBinding, run_options: ort.RunOptions | None = None) -> None:
        graph = run_options.get_run_config_entry("gpu_graph_id") if run_options else "0"
        feeds = {name: v.array for name, v in binding.inputs.items()}
        shape = feeds[tensors.INPUT_IDS].shape
        if self.cuda.on_run is not None:
            self.cuda.on_run(self.model, shape)
        self.runs.append((graph, shape))
        if self.cuda.fail_at.get(self.model) == shape:
            raise RuntimeError("CUDA failure 2: out of memory")
        for value, out in zip(
            binding.outputs.values(), self.cpu.run(list(binding.outputs), feeds), strict=True
        ):
            value.array[...] = out


def install(monkeypatch: pytest.MonkeyPatch) -> Cuda:
    """Make the service see one GPU and get `FakeCudaSession`s; returns their record."""
    cuda = Cuda()

    def session(path: str, **kw: Any) -> FakeCudaSession:
        s = FakeCudaSession(cuda, path, **kw)
        cuda.sessions.append(s)
        return s

    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    monkeypatch.setattr(runtime, "gpu_count", lambda: 1)
    monkeypatch.setattr(runtime, "preload_cuda_libraries", lambda: None)
    monkeypatch.setattr(runtime.ort, "InferenceSession", session)
    monkeypatch.setattr(
        cuda_graphs, "device_buffer", lambda shape, dtype, device_id: FakeDeviceValue(shape, dtype)
    )
    return cuda
