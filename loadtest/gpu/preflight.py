"""What the round checks before any step: an NVIDIA GPU (NVML) and an ONNX Runtime CUDA provider
that really runs a graph. Each missing piece is one line and exit 2 at once, not minutes later."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from contract.cli import fail
from service.runtime import nvml
from service.runtime.session import CUDA, preload_cuda_libraries

REHEARSAL_GPU = {"name": "CPU rehearsal", "driver": "none"}


def gpu_facts() -> dict[str, Any] | None:
    """Name, driver and memory of GPU 0 through NVML; None without an NVIDIA GPU (or when NVML
    cannot say all of these: the report names the card it measured, or refuses to run)."""
    host = nvml.probe()
    if host is None or host.count == 0:
        return None
    facts = {
        "name": host.gpus[0].name,
        "driver": host.driver,
        "cuda_driver": host.cuda_driver,
        "count": host.count,
        "memory_gib": host.gpus[0].memory_gib,
    }
    return None if None in facts.values() else facts


def cuda_provider_error() -> str | None:
    """Why ONNX Runtime's CUDA provider cannot run a one-node graph here, or None when it can.
    A provider library that does not load (missing CUDA libraries, code for another GPU
    generation) otherwise shows up minutes later as a silent CPU fallback."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe", [x], [x])
    graph.output[0].name = "y"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    preload_cuda_libraries()
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=[CUDA])
        y = sess.run(None, {"x": np.arange(4, dtype=np.float32)})[0]
    except Exception as exc:  # noqa: BLE001 - the reason is the answer
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if sess.get_providers()[0] != CUDA:
        return f"the session runs on {sess.get_providers()[0]}"
    return None if y.tolist() == [0.0, 2.0, 4.0, 6.0] else f"wrong answer {y.tolist()}"


def preflight(rehearse_cpu: bool) -> tuple[dict[str, Any], list[str]]:
    """The GPU's facts and ONNX Runtime's providers, or exit 2 with one line: a missing GPU, CUDA
    provider or a provider that cannot run a graph would otherwise cost the whole budget."""
    gpu = dict(REHEARSAL_GPU) if rehearse_cpu else gpu_facts()
    if gpu is None:
        fail(
            "no NVIDIA GPU on this host (NVML finds none): make gpu-report needs a CUDA GPU and onnxruntime-gpu"
        )
    providers = ort.get_available_providers()
    if not rehearse_cpu and "CUDAExecutionProvider" not in providers:
        fail(
            f"onnxruntime has no CUDAExecutionProvider (has {', '.join(providers)}): install onnxruntime-gpu"
        )
    why = None if rehearse_cpu else cuda_provider_error()
    if why:
        fail(f"onnxruntime's CUDA provider cannot run a graph here ({why}): see docs/gpu/RUNBOOK.md")
    return gpu, providers
