"""Export's defaults, stated once: the CLI's flags, the Python API and the parity proof read them here.

Torch-free on purpose: `python -m export --help` and usage errors must not wait for torch.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_OPSET, MAX_OPSET = 17, 20  # what the exporter and both runtimes were checked with
DEFAULT_OPSET = MIN_OPSET
FP16_TOLERANCE = 1e-2  # max |logits diff| for model.fp16.onnx; deep models may need more
RANDOM_VOCAB = 30522  # BERT's vocabulary size: the random-init embedding table matches BERT-base
DEFAULT_RANDOM_PRESET = "base"  # the paper's benchmark pair


@dataclass(frozen=True)
class ExportOptions:
    """How to export one model; the same object for a training run and a random-init preset,
    so the two entry points (and the CLI in front of them) cannot drift apart in defaults."""

    opset: int = DEFAULT_OPSET
    fp16: bool = False  # also write model.fp16.onnx
    optimize: bool = False  # also write model.opt.onnx (ONNX Runtime's transformer optimizer)
    gpu: bool = False  # also write model.gpu.onnx (fused for CUDA, then fp16; parity pending on CUDA)
    seed: int = 0  # parity batches (and the weights of a random-init export)
    fp16_tolerance: float = FP16_TOLERANCE
