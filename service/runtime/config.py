"""What ONNX Runtime sessions need to know, decided once: the provider and its options, threads,
CUDA graphs and the shape grid they pad to.

The service's settings (service.settings.ServiceSettings, read from H2H_* variables) are one of
these; a benchmark or profile builds its own, so no variable of the server steers it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # ONNX Runtime
    provider: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="auto: CUDA when a GPU and the CUDA provider exist, else CPU"
    )
    intra_op_threads: NonNegativeInt = Field(
        default=0,
        description="threads per ONNX Runtime session. 0 (auto): on CPU the cores but one (the event "
        "loop's) shared among the loaded models, at least 1; ORT's default with CUDA",
    )
    inter_op_threads: NonNegativeInt = Field(default=0, description="0: ONNX Runtime's default")
    ort_spinning: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="ORT intra/inter-op threads busy-wait for work after each run. auto: off on CPU, where "
        "spinning threads take the cores the event loop needs (2.6 -> 1.4 ms CPU per batch-1 request "
        "measured), ORT's default (on) with CUDA",
    )
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    cuda_device_id: NonNegativeInt = 0
    cuda_arena_extend_strategy: Literal["kNextPowerOfTwo", "kSameAsRequested"] = "kSameAsRequested"
    cuda_mem_limit_bytes: NonNegativeInt = Field(default=0, description="0: no limit")
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "HEURISTIC"
    cuda_tf32: bool = Field(
        default=False,
        description="let fp32 matmuls on CUDA use TF32 (ONNX Runtime's own default is on). Off so the fp32 "
        "variant serves what export's parity check proved: on an H100, TF32 moved tiny-model logits by "
        "2e-3 from the CPU's; the fp16 variant is the fast path",
    )
    cuda_graph: bool = Field(
        default=True,
        description="on CUDA (with io_binding), serve through captured CUDA graphs: batches are padded to a "
        "bounded set of shapes (rows to 1, 2, 4 ... up to max_batch_size, length to its length_bucket's "
        "upper edge up to the model's maximum) and a graph per shape is captured at start, before the "
        "model is ready. The deep model's kernel launches are most of its GPU time (2.8x at batch 1 for "
        "144L-1H on an H100, in-process). false: plain runs, each batch at its own shape. No effect on CPU",
    )
    io_binding: bool = Field(
        default=True,
        description="on CUDA, bind inputs and outputs on the device; false also turns cuda_graph off",
    )

    # the shape grid CUDA graphs pad batches into (also the batcher's limits, in the service)
    max_batch_size: int = Field(default=32, ge=1, le=4096, description="rows per executed batch")
    length_bucket: int = Field(
        default=16, ge=1, description="batch only rows whose lengths share a bucket of this width"
    )
