"""The model repository's contract: what `export` writes and `service` reads.

Torch-free and onnx-free on purpose: the service container validates manifests with this
module and nothing heavier.

Layout, one folder per model (written to a temporary sibling, then renamed):
  model_repository/<name>/
    manifest.json      this schema
    tokenizer.json     contract.tokenizer.Tokenizer
    model.onnx         fp32 export (always present)
    model.opt.onnx     ONNX Runtime-optimized graph (with --optimize)
    model.fp16.onnx    fp16 weights, int64 inputs and fp32 outputs kept (with --fp16)
    model.gpu.onnx     fused for CUDA (attention, skip+LayerNorm, bias+GELU), then fp16 (with --gpu)
    reference.npz      contract.reference batches, when a variant's parity is pending on a provider
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contract import tensors

MANIFEST_FORMAT = "headtohead-model/1"
# The variant files, spelled here alone (export writes them, the service and the load tester read them)
FP32_FILE, OPT_FILE, FP16_FILE, GPU_FILE = "model.onnx", "model.opt.onnx", "model.fp16.onnx", "model.gpu.onnx"
MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# ONNX Runtime's provider names, as parity records them
CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"


class _Strict(BaseModel):
    """Unknown fields are refused: a field export writes must be declared here first, so this
    schema is the whole contract and a typo or a stray field fails validation instead of
    riding along unread. Fields added later have defaults, so older manifests still load."""

    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Strict):
    """KServe v2 tensor metadata; -1 marks a dynamic dimension."""

    name: str
    datatype: Literal["INT64", "FP32", "FP16"]
    shape: list[int]


def io_specs(num_labels: int, d_model: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The manifest's `inputs` and `outputs` for a model: contract.tensors with -1 for dynamic axes."""
    specs = [
        TensorSpec(name=name, datatype=dtype, shape=[d if isinstance(d, int) else -1 for d in dims])
        for name, (dtype, dims) in tensors.graph_io(num_labels, d_model).items()
    ]
    return specs[: len(tensors.INPUTS)], specs[len(tensors.INPUTS) :]


class Parity(_Strict):
    """Measured PyTorch vs ONNX Runtime agreement on random batches (contract.reference)."""

    max_abs_logits: float
    max_abs_embedding: float
    argmax_agreement: float = Field(ge=0, le=1)
    tolerance: float
    shapes: list[list[int]]  # (batch, sequence) pairs checked
    # Optional (added by export): rows whose PyTorch top-2 logit gap is within 2 x tolerance,
    # where an argmax flip is within tolerance; the argmax check skips only those rows.
    near_ties: int = 0
    decisive_disagreements: int = 0  # argmax flips on rows that are not near-ties (export fails if > 0)
    rows: int | None = None
    provider: str = CPU_PROVIDER  # where it was measured (export: CPU)
    # operator types that provider ran in fp32 because it has no fp16 kernel for them (its
    # result then says nothing about the fp16 arithmetic another provider will do)
    emulated_ops: list[str] = []


class Variant(_Strict):
    file: str
    precision: Literal["fp32", "fp16"]
    optimized: bool
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int
    parity: Parity
    # providers on which this variant must still prove parity (the service does, at start,
    # from `reference`) before it is served there. None: written before this field existed;
    # service.runtime.variants then treats fp16 as pending on CUDA.
    parity_pending: list[str] | None = None
    # node count per operator type in the file, and "total"
    operators: dict[str, int] = {}


class Manifest(_Strict):
    """manifest.json: the model's shape, I/O, variants with their parity proof, and provenance."""

    format: Literal["headtohead-model/1"] = MANIFEST_FORMAT
    name: str = Field(pattern=MODEL_NAME_RE.pattern)
    arch: Literal["mha", "sha"]
    layers: int
    heads: int
    d_model: int
    head_dim: int
    ffn_dim: int
    norm: Literal["pre", "post", "admin"]
    params: int
    flops_per_token: int
    opset: int
    max_sequence_length: int
    vocab_size: int
    pad_id: int = 0
    labels: list[str]
    tokenizer: str = "tokenizer.json"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    default_variant: str = FP32_FILE
    variants: dict[str, Variant]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the default variant")
    test_accuracy: float | None = None
    validation_accuracy: float | None = None
    test_examples: int | None = None  # size of the test set behind test_accuracy (its sampling noise)
    source_run: str | None = None
    random_init: bool = False
    created: str
    versions: dict[str, str] = {}
    # contract.reference batches for proving pending variants at start (None when none is pending)
    reference: str | None = None
    # ONNX Runtime optimizer fusions by operator: model.gpu.onnx's with --gpu, else model.opt.onnx's
    # with --optimize, else empty (each variant's `operators` has its own node counts)
    fused_operators: dict[str, int] = {}
    # wall seconds per export step ("export", "optimize", "fp16", "parity"), for the record
    export_seconds: dict[str, float] = {}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hash in chunks: a base-size graph is hundreds of MB and need not sit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_manifest(model_dir: str | Path) -> Manifest:
    """Parse and validate `<model_dir>/manifest.json` (does not hash the ONNX files)."""
    path = Path(model_dir) / "manifest.json"
    return Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))


def verify_variant(model_dir: str | Path, manifest: Manifest, variant: str | None = None) -> Path:
    """Return the path of a variant after checking its sha256 against the manifest."""
    name = variant or manifest.default_variant
    if name not in manifest.variants:
        raise ValueError(f"{manifest.name}: no variant {name!r} (have {', '.join(manifest.variants)})")
    path = Path(model_dir) / manifest.variants[name].file
    if not path.is_file():
        raise FileNotFoundError(f"{manifest.name}: {path.name} is missing")
    digest = sha256_file(path)
    if digest != manifest.variants[name].sha256:
        raise ValueError(
            f"{manifest.name}: sha256 of {path.name} is {digest[:12]}…, manifest says {manifest.variants[name].sha256[:12]}…"
        )
    return path
