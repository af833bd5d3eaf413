"""Derived variants of the fp32 export: ORT-optimized graph and fp16 weights.

Both are written beside `model.onnx` and go through the same parity check before the
folder is published, so a fusion that changes numerics is caught at export time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx

from models.config import ModelConfig


def optimize(src: str | Path, dst: str | Path, cfg: ModelConfig) -> dict[str, int]:
    """Run ONNX Runtime's transformer optimizer (BERT fusions + basic graph optimizations).

    opt_level=1 keeps only provider-independent ORT rewrites (constant folding, redundant
    node removal), so the file runs on CPU and CUDA alike; the fusions (Attention,
    SkipLayerNormalization, BiasGelu, ...) are ORT contrib ops both providers implement.
    Returns the count of fused operators the optimizer reports (0s dropped).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    # Searches that never match our graphs and cost time on 144 layers: rotary embeddings
    # (decoder-only), EmbedLayerNormalization (needs BERT's token-type input), quantized MatMul.
    options.enable_rotary_embeddings = False
    options.enable_embed_layer_norm = False
    options.enable_qordered_matmul = False

    # The optimizer logs every fusion attempt at INFO/WARNING; keep the CLI quiet.
    # (its modules also log under their bare names, e.g. "fusion_attention")
    for name in ("onnxruntime.transformers", "fusion_attention", "fusion_base", "onnx_model"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        opt = optimize_model(
            str(src),
            model_type="bert",
            num_heads=cfg.heads,
            hidden_size=0,  # detected: SHA's q/k/v width (head_dim) differs from d_model
            opt_level=1,
            use_gpu=False,
            optimization_options=options,
        )
        opt.save_model_to_file(str(dst), use_external_data_format=False)
    stats = opt.get_fused_operator_statistics()
    return {k: int(v) for k, v in stats.items() if v}


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
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    _detach_outputs(model.graph)
    casts = [n.name for n in model.graph.node if n.op_type == "Cast"]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # "-10000.0 will be truncated": exact in fp16
        half = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=casts)
    onnx.save(half, str(dst))
