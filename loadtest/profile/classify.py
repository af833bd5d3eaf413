"""Operator classes for the profile: which kind of work each ONNX node (or CUDA kernel) does.

Pure functions over names, so the table that decides where a millisecond is booked is tested
without a session. The classes are coarse on purpose: they answer "is the time in the matrix
products, in attention, in normalisation, in small elementwise kernels, in moving bytes, or
somewhere else", which is what the MHA/SHA cost difference turns on.
"""

from __future__ import annotations

import re

ATTENTION, GEMM, LAYERNORM, ELEMENTWISE, COPIES, OTHER = (
    "attention",
    "gemm",
    "layernorm",
    "elementwise",
    "copies",
    "other",
)
CLASSES = (ATTENTION, GEMM, LAYERNORM, ELEMENTWISE, COPIES, OTHER)

# ONNX and ONNX Runtime contrib operator types, by class
_BY_OP: dict[str, frozenset[str]] = {
    ATTENTION: frozenset(
        {
            "Attention",
            "MultiHeadAttention",
            "PackedAttention",
            "PackedMultiHeadAttention",
            "GroupQueryAttention",
            "DecoderMaskedMultiHeadAttention",
            "DecoderMaskedSelfAttention",
            "SparseAttention",
        }
    ),
    GEMM: frozenset({"MatMul", "Gemm", "FusedMatMul", "MatMulInteger", "QGemm", "MatMulNBits", "FusedGemm"}),
    LAYERNORM: frozenset(
        {
            "LayerNormalization",
            "SkipLayerNormalization",
            "SimplifiedLayerNormalization",
            "SkipSimplifiedLayerNormalization",
            "EmbedLayerNormalization",
            "RMSNormalization",
        }
    ),
    # elementwise maths and the reductions an unfused softmax / LayerNorm is made of
    ELEMENTWISE: frozenset(
        {
            "Add",
            "Sub",
            "Mul",
            "Div",
            "Pow",
            "Sqrt",
            "Reciprocal",
            "Neg",
            "Abs",
            "Exp",
            "Log",
            "Erf",
            "Tanh",
            "Sigmoid",
            "Relu",
            "Gelu",
            "FastGelu",
            "BiasGelu",
            "QuickGelu",
            "BiasAdd",
            "BiasSoftmax",
            "Softmax",
            "Clip",
            "Min",
            "Max",
            "Where",
            "Equal",
            "Less",
            "Greater",
            "Not",
            "ReduceMax",
            "ReduceMin",
            "ReduceSum",
            "ReduceMean",
            "ReduceProd",
        }
    ),
    # bytes moved or re-described, no arithmetic: host/device copies, casts, layout changes
    COPIES: frozenset(
        {
            "MemcpyFromHost",
            "MemcpyToHost",
            "Memcpy",
            "Cast",
            "Transpose",
            "Reshape",
            "Squeeze",
            "Unsqueeze",
            "Flatten",
            "Concat",
            "Split",
            "Slice",
            "Expand",
            "Tile",
            "Identity",
            "Gather",
            "GatherElements",
            "ScatterND",
            "Pad",
        }
    ),
}
_OP_CLASS = {op: cls for cls, ops in _BY_OP.items() for op in ops}

# CUDA kernel names (where the build emits "Kernel" events without an operator): first match wins
_KERNEL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (ATTENTION, re.compile(r"fmha|flash|attention|attn|mha", re.I)),
    (LAYERNORM, re.compile(r"layer_?norm|skiplayernorm|rms_?norm", re.I)),
    (GEMM, re.compile(r"gemm|cublas|cutlass|xmma|matmul|sgemv|gemv", re.I)),
    (COPIES, re.compile(r"memcpy|copy|cast|transpose|concat|gather|slice|expand", re.I)),
    (ELEMENTWISE, re.compile(r"elementwise|binary|unary|gelu|softmax|reduce|add|mul|div|erf|exp", re.I)),
)


def op_class(op_type: str) -> str:
    """The class of an ONNX node's operator type ('MatMul' -> 'gemm'); unknown types are 'other'."""
    return _OP_CLASS.get(op_type, OTHER)


def kernel_class(kernel_name: str, op_type: str | None = None) -> str:
    """The class of a CUDA kernel: its node's operator when the profiler names it, else a guess
    from the kernel's (mangled) name; 'other' when neither says."""
    if op_type:
        cls = op_class(op_type)
        if cls != OTHER:
            return cls
    for cls, pattern in _KERNEL_PATTERNS:
        if pattern.search(kernel_name):
            return cls
    return OTHER
