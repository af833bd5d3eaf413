"""Derived variants of the fp32 export: ORT-optimized graph, fp16 weights, fused fp16 for CUDA.

All are written beside `model.onnx` and go through the same parity check before the
folder is published, so a fusion that changes numerics is caught at export time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from models.config import ModelConfig

if TYPE_CHECKING:  # onnxruntime.transformers is imported only when a fused variant is built
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.onnx_model import OnnxModel


def _fusion_options() -> FusionOptions:
    """BERT fusions, minus searches that never match our graphs and cost time on 144 layers:
    rotary embeddings (decoder-only), EmbedLayerNormalization (needs BERT's token-type input),
    quantized MatMul. GELU stays exact (BiasGelu, erf): FastGelu's tanh form is not torch's gelu."""
    # onnxruntime.transformers is heavy, and needed only for the variants that fuse
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_rotary_embeddings = False
    options.enable_embed_layer_norm = False
    options.enable_qordered_matmul = False
    return options


def drop_identities(model: onnx.ModelProto) -> int:
    """Remove Identity nodes (except those producing graph outputs) in one pass; returns how many.

    The exporter's constant folding shares equal initializers through Identity nodes: a random-init
    model has ~10 per layer (every zero bias, every unit LayerNorm weight). The optimizer removes
    them too, but rewires all nodes once per Identity, which is quadratic in depth; this is linear.
    """
    graph = model.graph
    outputs = {o.name for o in graph.output}
    source = {
        n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.output[0] not in outputs
    }

    def root(name: str) -> str:
        while name in source:
            name = source[name]
        return name

    kept = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in source)]
    for n in kept:
        n.input[:] = [root(i) for i in n.input]
    del graph.node[:]
    graph.node.extend(kept)
    return len(source)


def _fused(src: str | Path, cfg: ModelConfig, *, use_gpu: bool, opt_level: int) -> OnnxModel:
    """ONNX Runtime's transformer optimizer on `src`, quietly (it logs every fusion attempt at
    INFO/WARNING, and its modules also log under bare names such as "fusion_attention")."""
    # onnxruntime.transformers is heavy, and needed only for the variants that fuse
    from onnxruntime.transformers.optimizer import optimize_model

    for name in ("onnxruntime.transformers", "fusion_attention", "fusion_base", "onnx_model"):
        logging.getLogger(name).setLevel(logging.ERROR)
    model = onnx.load(str(src))
    drop_identities(model)
    with contextlib.redirect_stdout(io.StringIO()):
        return optimize_model(
            model,
            model_type="bert",
            num_heads=cfg.heads,
            hidden_size=0,  # detected: SHA's q/k/v width (head_dim) differs from d_model
            opt_level=opt_level,
            use_gpu=use_gpu,
            optimization_options=_fusion_options(),
        )


def _stats(model: OnnxModel) -> dict[str, int]:
    """The fused operators the optimizer reports, 0s dropped."""
    return {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}


def optimize(src: str | Path, dst: str | Path, cfg: ModelConfig) -> dict[str, int]:
    """model.opt.onnx: BERT fusions + basic graph optimizations, fp32, for any provider.

    opt_level=1 keeps only provider-independent ORT rewrites (constant folding, redundant
    node removal), so the file runs on CPU and CUDA alike; the fusions (Attention,
    SkipLayerNormalization, BiasGelu, ...) are ORT contrib ops both providers implement.
    Returns the count of fused operators the optimizer reports.
    """
    opt = _fused(src, cfg, use_gpu=False, opt_level=1)
    with contextlib.redirect_stdout(io.StringIO()):
        opt.save_model_to_file(str(dst), use_external_data_format=False)
    return _stats(opt)


def fuse_for_gpu(src: str | Path, dst: str | Path, cfg: ModelConfig) -> dict[str, int]:
    """model.gpu.onnx: the BERT fusions chosen for CUDA, then fp16 with fp32 outputs.

    use_gpu=True lets the optimizer pick the fusions CUDA kernels exist for (Attention, whose
    CUDA kernel chooses fused / memory-efficient / flash attention per shape). opt_level=0: no
    ONNX Runtime session here (export may run without a GPU); the service's CUDA session applies
    ORT's own optimizations when it loads the file. The fp16 pass is the optimizer's own, which
    knows the contrib ops (Attention's int32 mask index stays int32); keep_io_types keeps int64
    ids/mask in and fp32 logits/embedding out (contract.tensors).
    """
    fused = _fused(src, cfg, use_gpu=True, opt_level=0)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        fused.convert_float_to_float16(keep_io_types=True)
        fused.save_model_to_file(str(dst), use_external_data_format=False)
    return _stats(fused)


def operator_counts(path: str | Path) -> dict[str, int]:
    """Nodes per operator type in the graph, most frequent first, and "total"."""
    nodes = onnx.load(str(path), load_external_data=False).graph.node
    counts = Counter(n.op_type for n in nodes)
    return {**dict(counts.most_common()), "total": len(nodes)}


def cpu_emulated_ops(path: str | Path) -> list[str]:
    """Operator types ONNX Runtime's CPU provider runs in fp32 for this graph, for want of an
    fp16 kernel: it wraps them in Casts it inserts itself. A CPU parity check of such a graph
    proves its structure and fp16 weights, not the fp16 arithmetic CUDA will do."""
    import onnxruntime as ort  # heavy, and only for the variants that need it

    original = {n.name for n in onnx.load(str(path), load_external_data=False).graph.node}
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.optimized_model_filepath = str(Path(tmp) / "cpu.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        nodes = onnx.load(so.optimized_model_filepath).graph.node
    inserted = {o for n in nodes if n.op_type == "Cast" and n.name not in original for o in n.output}
    return sorted({n.op_type for n in nodes if n.op_type != "Cast" and inserted & set(n.input)})


def _detach_outputs(graph: onnx.GraphProto) -> None:
    """Give each graph output that other nodes also read its own Identity producer.

    `embedding` is both an output and the classifier's input; with keep_io_types the
    converter casts the output back to fp32 under its old name and the classifier Gemm
    ends up with an fp32 input and fp16 weights. Splitting the name avoids that.
    """
    consumed = {i for n in graph.node for i in n.input}
    for out in graph.output:
        if out.name not in consumed:
            continue
        inner = f"{out.name}_internal"
        for n in graph.node:
            n.input[:] = [inner if i == out.name else i for i in n.input]
            n.output[:] = [inner if o == out.name else o for o in n.output]
        graph.node.append(onnx.helper.make_node("Identity", [inner], [out.name], name=f"{out.name}_output"))


def to_fp16(src: str | Path, dst: str | Path) -> None:
    """fp16 weights and compute; fp32 `logits`/`embedding` and int64 inputs kept (keep_io_types).

    Cast nodes are left in fp32 (node_block_list): the converter re-types their outputs
    to fp16 but keeps `to=FLOAT`, which ONNX Runtime rejects; blocked, it inserts the
    fp32->fp16 cast after them instead.
    """
    from onnxconverter_common import float16  # heavy, and only for the variants that need it

    model = onnx.load(str(src))
    _detach_outputs(model.graph)
    casts = [n.name for n in model.graph.node if n.op_type == "Cast"]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # "-10000.0 will be truncated": exact in fp16
        half = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=casts)
    onnx.save(half, str(dst))
