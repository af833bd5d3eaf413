"""Serving through captured CUDA graphs: one graph per padded (batch, sequence) shape.

A deep single-head model is launch-bound on a GPU: 144 layers of small kernels, each issued by
ONNX Runtime's executor on the CPU (37 ms at batch 1 on an H100 where a captured graph replays
in 13 ms, docs/benchmarks.md). ORT replays a graph only into the device buffers it was captured
with, so each shape gets its own input/output buffers and graph id (`gpu_graph_id`); a batch is
copied into its shape's buffers, replayed, and its rows copied out.

Shapes come from a bounded grid (service.runtime.shapes: rows to powers of two, length to the bucket's
upper edge), and `capture_all` captures the whole grid when the model loads, so no request pays
for a capture and the graphs' device buffers are known before the model says ready. Padding rows
are [PAD] with only their first position unmasked (no all-zero mask, no NaN), and are dropped
from the answer. A shape outside the grid (a direct caller's) is captured the first time it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from contract import tensors
from service.runtime import nvml
from service.runtime.shapes import ShapeGrid, blank_batch, next_power_of_two

log = logging.getLogger(__name__)

# runs per shape at start: ORT allocates and captures a new graph id within its first run (running
# it again itself as needed), and the second replays it, so a graph that cannot replay fails at
# start rather than on a request
CAPTURE_RUNS = 2


def device_buffer(shape: list[int], dtype: type, device_id: int) -> ort.OrtValue:
    """An uninitialised CUDA buffer (the one allocation of device memory in this module)."""
    return ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, "cuda", device_id)


def output_dtype(out: Any) -> type:
    """The numpy dtype of graph output `out` (an ORT NodeArg): fp16 variants keep fp32 outputs
    unless exported otherwise."""
    return np.float16 if out.type == "tensor(float16)" else np.float32


def output_buffer(out: Any, rows: int, device_id: int) -> ort.OrtValue:
    """A device buffer for graph output `out` with `rows` rows, of its own dtype: a captured graph
    writes into buffers fixed before its first run."""
    return device_buffer([rows, *out.shape[1:]], output_dtype(out), device_id)


def padded_rows(rows: int) -> int:
    """The power of two at or above `rows` (1, 2, 4, 8 ...): few shapes, little padding."""
    return next_power_of_two(rows)


def pad_batch(
    ids: np.ndarray, mask: np.ndarray, rows: int, length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`ids`/`mask` as int64 with [PAD] rows appended up to `rows` (each attending to one
    position) and masked [PAD] positions up to `length`."""
    n, width = ids.shape
    length = width if length is None else length
    if (n, width) == (rows, length):
        return np.ascontiguousarray(ids, dtype=np.int64), np.ascontiguousarray(mask, dtype=np.int64)
    out_ids, out_mask = blank_batch(rows, length, 0, n)
    out_ids[:n, :width] = ids
    out_mask[:n, :width] = mask
    return out_ids, out_mask


@dataclass
class _Slot:
    """A captured shape: its graph id, fixed device buffers and the binding that names them."""

    run_options: ort.RunOptions
    inputs: dict[str, ort.OrtValue]
    binding: Any  # onnxruntime.IOBinding
    nbytes: int  # of its bound input and output buffers


@dataclass(frozen=True)
class GraphMemory:
    """What the captured graphs hold: their count, the bytes of their bound device buffers (from
    the shapes and dtypes allocated), how long capturing them all took at start, and how much this
    process's device memory grew meanwhile as NVML saw it (ORT's arena for the graphs' intermediate
    tensors plus those buffers; None when NVML cannot see the process)."""

    graphs: int
    bound_bytes: int
    capture_s: float
    capture_growth_bytes: int | None = None


class CudaGraphs:
    """Runs batches of one session (created with `enable_cuda_graph`) through per-shape graphs."""

    def __init__(self, session: ort.InferenceSession, device_id: int, grid: ShapeGrid | None = None) -> None:
        self.session = session
        self.device_id = device_id
        self.grid = grid
        self._slots: dict[tuple[int, int], _Slot] = {}
        self._next_id = 0  # 0 is ORT's default graph: never used here, so every id is explicit
        self._lock = threading.Lock()  # a batch may run on the loop or in the worker thread
        self._outputs = {o.name: o for o in session.get_outputs()}
        self.capture_s = 0.0
        self.capture_growth_bytes: int | None = None

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return sorted(self._slots)

    def memory(self) -> GraphMemory:
        with self._lock:
            bound = sum(s.nbytes for s in self._slots.values())
            return GraphMemory(len(self._slots), bound, self.capture_s, self.capture_growth_bytes)

    def padded(self, rows: int, length: int) -> tuple[int, int]:
        """The captured shape a batch runs at: the grid's, or rows to a power of two without one."""
        return self.grid.padded(rows, length) if self.grid else (padded_rows(rows), length)

    def capture_all(self) -> GraphMemory:
        """Capture (and replay once) a graph for every shape of the grid, smallest first; raises
        naming the shape that failed. Called once, before the model serves."""
        assert self.grid is not None, "capture_all needs a shape grid"
        t0, before = time.perf_counter(), nvml.process_memory(self.device_id)
        for rows, length in self.grid.shapes():
            ids, mask = blank_batch(rows, length, 0)
            try:
                for _ in range(CAPTURE_RUNS):
                    self._run_padded(ids, mask)
            except Exception as exc:
                raise RuntimeError(f"CUDA graph capture failed at batch {rows} x {length}: {exc}") from exc
        self.capture_s = time.perf_counter() - t0
        after = nvml.process_memory(self.device_id)  # NVML's index: the CUDA id unless remapped
        self.capture_growth_bytes = after - before if after is not None and before is not None else None
        return self.memory()

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, width = input_ids.shape
        ids, mask = pad_batch(input_ids, attention_mask, *self.padded(rows, width))
        logits, embedding = self._run_padded(ids, mask)
        return (np.asarray(logits[:rows], dtype=np.float32), np.asarray(embedding[:rows], dtype=np.float32))

    def _run_padded(self, ids: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            slot = self._slots.get(ids.shape) or self._new_slot(ids.shape)
            slot.inputs[tensors.INPUT_IDS].update_inplace(ids)
            slot.inputs[tensors.ATTENTION_MASK].update_inplace(mask)
            self.session.run_with_iobinding(slot.binding, slot.run_options)
            return slot.binding.copy_outputs_to_cpu()

    def new_graph(self) -> ort.RunOptions:
        """Run options naming a graph id no other shape uses (ORT captures a new id's first run
        and replays it, into the same buffers, on every later run with that id)."""
        self._next_id += 1
        run_options = ort.RunOptions()
        run_options.add_run_config_entry("gpu_graph_id", str(self._next_id))
        return run_options

    def _new_slot(self, shape: tuple[int, int]) -> _Slot:
        """Device buffers and a graph id for `shape`; ORT captures on the slot's first runs."""
        if self.capture_s and self.grid is not None:
            log.warning("batch shape %s is outside the captured grid: capturing it now", shape)
        run_options = self.new_graph()
        binding = self.session.io_binding()
        inputs = {}
        nbytes = 0
        for name in tensors.INPUTS:
            inputs[name] = device_buffer(list(shape), np.int64, self.device_id)
            binding.bind_ortvalue_input(name, inputs[name])
            nbytes += shape[0] * shape[1] * np.dtype(np.int64).itemsize
        for name in tensors.OUTPUTS:  # bound in this order, so copied out in this order
            out = self._outputs[name]
            binding.bind_ortvalue_output(name, output_buffer(out, shape[0], self.device_id))
            nbytes += shape[0] * int(np.prod(out.shape[1:])) * np.dtype(output_dtype(out)).itemsize
        slot = self._slots[shape] = _Slot(run_options, inputs, binding, nbytes)
        return slot
