"""Serving through captured CUDA graphs: one graph per padded (batch, sequence) shape.

A deep single-head model is launch-bound on a GPU: 144 layers of small kernels, each issued by
ONNX Runtime's executor on the CPU (37 ms at batch 1 on an H100 where a captured graph replays
in 13 ms, docs/benchmarks.md). ORT replays a graph only into the device buffers it was captured
with, so each shape gets its own input/output buffers and graph id (`gpu_graph_id`); a batch is
copied into its shape's buffers, replayed, and its rows copied out. Batches are padded to a
power-of-two row count so that at most log2(max batch) + 1 graphs exist per sequence bucket;
padding rows are [PAD] with only their first position unmasked (no all-zero mask, no NaN), and
are dropped from the answer. Graphs are captured lazily, the first time a shape runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from contract import tensors


@dataclass
class _Slot:
    """A captured shape: its graph id, fixed device buffers and the binding that names them."""

    run_options: ort.RunOptions
    inputs: dict[str, ort.OrtValue]
    binding: Any  # onnxruntime.IOBinding


def output_buffer(out: Any, rows: int, device_id: int) -> ort.OrtValue:
    """A device buffer for graph output `out` (an ORT NodeArg) with `rows` rows, of its own dtype:
    a captured graph writes into buffers fixed before its first run."""
    dtype = np.float16 if out.type == "tensor(float16)" else np.float32
    return ort.OrtValue.ortvalue_from_shape_and_type([rows, *out.shape[1:]], dtype, "cuda", device_id)


def padded_rows(rows: int) -> int:
    """The power of two at or above `rows` (1, 2, 4, 8 ...): few shapes, little padding."""
    return 1 << max(0, rows - 1).bit_length()


def pad_batch(ids: np.ndarray, mask: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """`ids`/`mask` with [PAD] rows appended up to `rows`; each pad row attends to one position."""
    extra = rows - ids.shape[0]
    if extra == 0:
        return np.ascontiguousarray(ids, dtype=np.int64), np.ascontiguousarray(mask, dtype=np.int64)
    pad_mask = np.zeros((extra, mask.shape[1]), dtype=np.int64)
    pad_mask[:, 0] = 1
    return (
        np.concatenate([ids, np.zeros((extra, ids.shape[1]), dtype=np.int64)]).astype(np.int64),
        np.concatenate([mask.astype(np.int64), pad_mask]),
    )


class CudaGraphs:
    """Runs batches of one session (created with `enable_cuda_graph`) through per-shape graphs."""

    def __init__(self, session: ort.InferenceSession, device_id: int) -> None:
        self.session = session
        self.device_id = device_id
        self._slots: dict[tuple[int, int], _Slot] = {}
        self._next_id = 0  # 0 is ORT's default graph: never used here, so every id is explicit
        self._lock = threading.Lock()  # a batch may run on the loop or in the worker thread
        self._outputs = {o.name: o for o in session.get_outputs()}

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return sorted(self._slots)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = input_ids.shape[0]
        ids, mask = pad_batch(input_ids, attention_mask, padded_rows(rows))
        with self._lock:
            slot = self._slots.get(ids.shape) or self._new_slot(ids.shape)
            slot.inputs[tensors.INPUT_IDS].update_inplace(ids)
            slot.inputs[tensors.ATTENTION_MASK].update_inplace(mask)
            self.session.run_with_iobinding(slot.binding, slot.run_options)
            logits, embedding = slot.binding.copy_outputs_to_cpu()
        return (np.asarray(logits[:rows], dtype=np.float32), np.asarray(embedding[:rows], dtype=np.float32))

    def new_graph(self) -> ort.RunOptions:
        """Run options naming a graph id no other shape uses (ORT captures a new id's first run
        and replays it, into the same buffers, on every later run with that id)."""
        self._next_id += 1
        run_options = ort.RunOptions()
        run_options.add_run_config_entry("gpu_graph_id", str(self._next_id))
        return run_options

    def _new_slot(self, shape: tuple[int, int]) -> _Slot:
        """Device buffers and a graph id for `shape`; ORT captures on the slot's first run."""
        run_options = self.new_graph()
        binding = self.session.io_binding()
        inputs = {}
        for name in tensors.INPUTS:
            inputs[name] = ort.OrtValue.ortvalue_from_shape_and_type(
                list(shape), np.int64, "cuda", self.device_id
            )
            binding.bind_ortvalue_input(name, inputs[name])
        for name in tensors.OUTPUTS:  # bound in this order, so copied out in this order
            binding.bind_ortvalue_output(name, output_buffer(self._outputs[name], shape[0], self.device_id))
        slot = self._slots[shape] = _Slot(run_options, inputs, binding)
        return slot
