"""The ONNX graph's inputs and outputs: the one place their names, dtypes and axes are stated.

export writes graphs with them and checks the result, the manifest declares them as KServe v2
metadata, the service binds them to ONNX Runtime and v2 requests name them. Every variant of
every model (fp32, optimized, fp16) has exactly this I/O.
"""

from __future__ import annotations

from typing import Final, Literal

INPUT_IDS: Final = "input_ids"  # INT64 [batch, sequence]; 0 is [PAD]
ATTENTION_MASK: Final = "attention_mask"  # INT64 [batch, sequence]; 1 real token, 0 padding (at the end)
LOGITS: Final = "logits"  # FP32 [batch, num_labels]
EMBEDDING: Final = "embedding"  # FP32 [batch, d_model], masked mean pool of the last layer

INPUTS: Final = (INPUT_IDS, ATTENTION_MASK)
OUTPUTS: Final = (LOGITS, EMBEDDING)
InputName = Literal["input_ids", "attention_mask"]
OutputName = Literal["logits", "embedding"]

BATCH, SEQUENCE = "batch", "sequence"  # the dynamic axes' names in the graph
DYNAMIC_AXES: Final = {
    INPUT_IDS: {0: BATCH, 1: SEQUENCE},
    ATTENTION_MASK: {0: BATCH, 1: SEQUENCE},
    LOGITS: {0: BATCH},
    EMBEDDING: {0: BATCH},
}


def graph_io(num_labels: int, d_model: int) -> dict[str, tuple[str, list[int | str]]]:
    """name -> (KServe v2 datatype, dims; axis names where dynamic) for one model."""
    return {
        INPUT_IDS: ("INT64", [BATCH, SEQUENCE]),
        ATTENTION_MASK: ("INT64", [BATCH, SEQUENCE]),
        LOGITS: ("FP32", [BATCH, num_labels]),
        EMBEDDING: ("FP32", [BATCH, d_model]),
    }
