"""ONNX Runtime sessions: provider choice, session options, IO binding on CUDA.

The onnxruntime-gpu wheel lists CUDAExecutionProvider even on machines without a GPU, so
"auto" asks NVML whether a GPU is present before choosing CUDA, and the provider reported
is the one the session actually runs on (`session.get_providers()[0]`), never the request.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from contract import tensors
from service.runtime import nvml
from service.runtime.config import RuntimeConfig
from service.runtime.cores import cgroup_cpu_limit, usable_cores  # noqa: F401 - re-exported
from service.runtime.cuda_graphs import CudaGraphs, GraphMemory, output_buffer
from service.runtime.shapes import ShapeGrid

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def gpu_count() -> int:
    """CUDA devices NVML can see (0 without a driver or without nvidia-ml-py)."""
    host = nvml.probe()
    return host.count if host else 0


def cuda_options(settings: RuntimeConfig) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "device_id": settings.cuda_device_id,
        "arena_extend_strategy": settings.cuda_arena_extend_strategy,
        "cudnn_conv_algo_search": settings.cudnn_conv_algo_search,
        "do_copy_in_default_stream": True,
        "use_tf32": int(settings.cuda_tf32),
    }
    if settings.cuda_mem_limit_bytes:
        opts["gpu_mem_limit"] = settings.cuda_mem_limit_bytes
    return opts


def preload_cuda_libraries() -> None:
    """Load CUDA/cuDNN from the nvidia-* pip wheels (e.g. those torch brings) when present.

    Without this the CUDA provider only finds libraries on the system loader path, and a
    machine whose CUDA comes from pip silently falls back to CPU. Best effort: a CUDA
    base image has the libraries on the loader path anyway.
    """
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # noqa: BLE001 - a missing wheel is not an error here
        log.debug("onnxruntime.preload_dlls() failed: %s", exc)


def choose_providers(settings: RuntimeConfig) -> list[tuple[str, dict[str, Any]]]:
    """Providers (with options) to ask for, best first; CPU is always the fallback."""
    available = ort.get_available_providers()
    want_cuda = settings.provider == "cuda" or (
        settings.provider == "auto" and CUDA in available and gpu_count() > 0
    )
    if want_cuda:
        if CUDA not in available:
            raise RuntimeError(f"provider=cuda but this onnxruntime offers only {', '.join(available)}")
        preload_cuda_libraries()
        return [(CUDA, cuda_options(settings)), (CPU, {})]
    return [(CPU, {})]


def spinning(settings: RuntimeConfig, provider: str) -> bool:
    """Whether ORT's thread pools busy-wait between runs.

    On CPU a spinning pool keeps cores busy after every run, the very cores the event loop needs
    to parse the next requests; on CUDA the host threads barely matter, so ORT's default stays.
    """
    if settings.ort_spinning == "auto":
        return provider == CUDA
    return settings.ort_spinning == "on"


def intra_op_threads(settings: RuntimeConfig, provider: str, sessions: int = 1) -> int:
    """Threads per session; 0 leaves ORT's default (one per core) in place.

    auto on CPU: the cores but one (the event loop's), shared among the sessions, at least 1.
    Measured on 2 cores with spinning off: a batch-1 run takes 0.47 ms with 2 threads and 0.24
    ms with 1 inside the server (waking the second thread costs more than it computes), and
    under load the second core is the event loop's anyway.
    """
    if settings.intra_op_threads:
        return settings.intra_op_threads
    if provider == CUDA:
        return 0
    return max(1, (usable_cores() - 1) // max(1, sessions))


def session_options(settings: RuntimeConfig, provider: str = CPU, sessions: int = 1) -> ort.SessionOptions:
    so = ort.SessionOptions()
    spin = "1" if spinning(settings, provider) else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    so.graph_optimization_level = _OPT_LEVELS[settings.graph_optimization_level]
    threads = intra_op_threads(settings, provider, sessions)
    if threads:
        so.intra_op_num_threads = threads
    if settings.inter_op_threads:
        so.inter_op_num_threads = settings.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only
    return so


def _feeds(input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
    return {tensors.INPUT_IDS: input_ids, tensors.ATTENTION_MASK: attention_mask}


class OrtModel:
    """One InferenceSession and a thread-safe `run(ids, mask) -> (logits, embedding)`."""

    def __init__(
        self,
        path: Path,
        settings: RuntimeConfig,
        sessions: int = 1,
        profile_prefix: str | None = None,
        max_length: int | None = None,
    ) -> None:
        """On CUDA with `settings.cuda_graph` and `settings.io_binding` (the defaults), `run` replays
        one captured graph per padded batch shape (service.runtime.cuda_graphs) and each `device_runner`
        captures its own shape as a graph. `max_length` (the model's longest sequence) bounds the
        shapes: batches are padded to a grid of them (`padded_shape`) that `warm_up` captures.
        `profile_prefix`: ONNX Runtime's profiler on, its trace written under that prefix when
        `session.end_profiling()` is called (`python -m loadtest profile`)."""
        chosen = choose_providers(settings)
        graphs = settings.cuda_graph and settings.io_binding and chosen[0][0] == CUDA
        if graphs:
            chosen[0] = (CUDA, {**chosen[0][1], "enable_cuda_graph": 1})
        options = session_options(settings, chosen[0][0], sessions)
        if profile_prefix is not None:
            options.enable_profiling, options.profile_file_prefix = True, profile_prefix
        self.session = ort.InferenceSession(
            str(path),
            sess_options=options,
            providers=[name for name, _ in chosen],
            provider_options=[opts for _, opts in chosen],
        )
        self.providers: list[str] = list(self.session.get_providers())
        self.provider = self.providers[0]
        if chosen[0][0] == CUDA and self.provider != CUDA:
            log.warning("%s: CUDA was requested but the session runs on %s", path, self.provider)
        self.device_id = settings.cuda_device_id
        self.use_io_binding = settings.io_binding and self.provider == CUDA
        names = {i.name for i in self.session.get_inputs()}
        if names != set(tensors.INPUTS):
            raise ValueError(f"{path.name}: inputs are {sorted(names)}, expected {', '.join(tensors.INPUTS)}")
        outs = [o.name for o in self.session.get_outputs()]
        if not set(tensors.OUTPUTS) <= set(outs):
            raise ValueError(f"{path.name}: outputs are {outs}, expected {', '.join(tensors.OUTPUTS)}")
        self.output_names = list(tensors.OUTPUTS)
        grid = ShapeGrid(settings.max_batch_size, settings.length_bucket, max_length) if max_length else None
        self.graphs = (
            CudaGraphs(self.session, self.device_id, grid) if graphs and self.provider == CUDA else None
        )

    def padded_shape(self, rows: int, length: int) -> tuple[int, int]:
        """The shape a batch of `rows` rows, longest `length` tokens, should be padded to: one of
        the captured graphs' on CUDA, its own on CPU (where padding only adds work)."""
        return self.graphs.padded(rows, length) if self.graphs is not None else (rows, length)

    def warm_up(self) -> GraphMemory | None:
        """Before the model serves: with CUDA graphs and a shape grid, capture every shape of the
        grid (raising, naming the shape, when one fails); otherwise run one small batch so the first
        request does not pay for ORT's lazy initialisation."""
        if self.graphs is not None and self.graphs.grid is not None:
            return self.graphs.capture_all()
        ids = np.full((1, 4), 1, dtype=np.int64)
        self.run(ids, np.ones_like(ids))
        return None

    def graph_memory(self) -> GraphMemory | None:
        """The captured graphs' count and bound device bytes; None when not serving through graphs."""
        return self.graphs.memory() if self.graphs is not None else None

    def graph_figures(self) -> dict[str, Any] | None:
        """`graph_memory` as JSON fields, for /v1/models and the start line."""
        memory = self.graph_memory()
        return dataclasses.asdict(memory) if memory else None

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.graphs is not None:
            return self.graphs.run(input_ids, attention_mask)
        if self.use_io_binding:
            return self._run_bound(input_ids, attention_mask)
        logits, embedding = self.session.run(self.output_names, _feeds(input_ids, attention_mask))
        return np.asarray(logits, dtype=np.float32), np.asarray(embedding, dtype=np.float32)

    def _run_bound(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CUDA: inputs copied once to the device, outputs allocated there by ORT, copied back."""
        binding = self._bound_inputs(input_ids, attention_mask)
        for name in self.output_names:
            binding.bind_output(name, "cuda", self.device_id)
        self.session.run_with_iobinding(binding)
        logits, embedding = binding.copy_outputs_to_cpu()
        return np.asarray(logits, dtype=np.float32), np.asarray(embedding, dtype=np.float32)

    def _bound_inputs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any:
        """An IOBinding with the host arrays copied to the device as the graph's inputs."""
        binding = self.session.io_binding()
        for name, arr in _feeds(input_ids, attention_mask).items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cuda", self.device_id)
            binding.bind_ortvalue_input(name, value)
        return binding

    def device_runner(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Callable[[], None]:
        """A run of the model alone, for benchmarks: on CUDA the inputs are copied to the device once
        and outputs stay there, and each call returns when the GPU is done (synchronize_outputs);
        on CPU it is a plain run. The service's `run` adds the host copies to this."""
        if self.provider != CUDA:
            return lambda: self.session.run(self.output_names, _feeds(input_ids, attention_mask))
        binding = self._bound_inputs(input_ids, attention_mask)
        outputs = {o.name: o for o in self.session.get_outputs()}
        for name in self.output_names:  # fixed buffers: a captured CUDA graph writes there
            binding.bind_ortvalue_output(
                name, output_buffer(outputs[name], input_ids.shape[0], self.device_id)
            )
        binding.synchronize_inputs()
        run_options = self.graphs.new_graph() if self.graphs is not None else None  # one graph per runner

        def run() -> None:
            self.session.run_with_iobinding(binding, run_options)
            binding.synchronize_outputs()

        return run
