"""Model configuration, presets, and the paper's MHA -> SHA mapping.

Kept free of torch imports so the service (which never loads torch) can read run
directories and manifests with the same types.
"""

from __future__ import annotations

from typing import Literal, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field, model_validator

Norm = Literal["pre", "post", "admin"]
Arch = Literal["mha", "sha"]
# How attention weights are initialised (see models.encoder.init_attention):
#   combined  as slices of one xavier-initialised (3 d_model x d_model) in-projection and one
#             d_model x d_model out-projection, as fairseq / Transformer-Clinic do; the
#             per-element variance is the same for any head count (the default)
#   per_head  xavier on each projection's own shape (d_model -> heads*head_dim); a 1-head layer
#             then starts with ~1.6x the attention-score spread of a 4-head layer
AttnInit = Literal["combined", "per_head"]


class ModelConfig(BaseModel):
    """Everything needed to rebuild an encoder; saved as the run's `config.json`."""

    model_config = ConfigDict(extra="forbid")

    arch: Arch
    vocab_size: int = Field(gt=2)
    num_labels: int = Field(gt=1)
    d_model: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    heads: int = Field(gt=0)
    layers: int = Field(gt=0)
    ffn_dim: int = Field(gt=0)
    norm: Norm = "admin"
    max_len: int = Field(default=64, gt=0)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    # fairseq's defaults (the code base of Admin and of the paper): dropout on the residual
    # branches and embeddings only. Dropout masks are also the single largest CPU cost of a
    # small-model training step (the CPU RNG), so the extra sites are off unless asked for.
    attention_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    activation_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    pad_id: int = 0
    attn_init: AttnInit = "combined"

    @model_validator(mode="after")
    def _check_heads(self) -> ModelConfig:
        if self.heads * self.head_dim > 4 * self.d_model:
            raise ValueError("heads * head_dim is implausibly larger than d_model")
        return self

    @property
    def label(self) -> str:
        return f"{self.layers}L-{self.heads}H"


class Preset(BaseModel):
    """Shape of the shallow multi-head model; the deep single-head twin is derived."""

    d_model: int
    head_dim: int
    heads: int
    layers: int
    ffn_dim: int
    max_len: int = 64


PRESETS: dict[str, Preset] = {
    # Fast enough for unit tests: 2L-4H vs 8L-1H.
    "tiny": Preset(d_model=64, head_dim=16, heads=4, layers=2, ffn_dim=256),
    # The default: 4L-4H vs 16L-1H, trains on 2 CPU cores in minutes.
    "small": Preset(d_model=128, head_dim=32, heads=4, layers=4, ffn_dim=512),
    # BERT-base size: 12L-12H vs 144L-1H (the paper's headline pair).
    "base": Preset(d_model=768, head_dim=64, heads=12, layers=12, ffn_dim=3072, max_len=512),
}


class ModelOptions(TypedDict, total=False):
    """Choices that leave the shape alone; one left out takes ModelConfig's default, stated there once."""

    norm: Norm
    dropout: float
    attn_init: AttnInit


class MhaOptions(ModelOptions, total=False):
    max_len: int


def mha(
    layers: int,
    heads: int,
    *,
    d_model: int,
    head_dim: int,
    ffn_dim: int,
    vocab_size: int,
    num_labels: int,
    **options: Unpack[MhaOptions],
) -> ModelConfig:
    """The shallow multi-head encoder."""
    return ModelConfig(
        arch="mha",
        vocab_size=vocab_size,
        num_labels=num_labels,
        d_model=d_model,
        head_dim=head_dim,
        heads=heads,
        layers=layers,
        ffn_dim=ffn_dim,
        **options,
    )


def sha_from(cfg: ModelConfig, *, norm: Norm | None = None) -> ModelConfig:
    """Split every H-head layer into H single-head layers (Liu, Liu & Han 2021).

    The head dimension is kept and the FFN width is divided by H, so the deep model has
    the same attention and FFN parameters and FLOPs as the shallow one; only the extra
    LayerNorms (and Admin's omega vectors) add a little.
    """
    if cfg.ffn_dim % cfg.heads:
        raise ValueError(f"ffn_dim {cfg.ffn_dim} is not divisible by heads {cfg.heads}")
    return cfg.model_copy(
        update={
            "arch": "sha",
            "heads": 1,
            "layers": cfg.layers * cfg.heads,
            "ffn_dim": cfg.ffn_dim // cfg.heads,
            "norm": norm or cfg.norm,
        }
    )


def from_preset(
    preset: str,
    arch: Arch,
    *,
    vocab_size: int,
    num_labels: int,
    max_len: int | None = None,
    **options: Unpack[ModelOptions],
) -> ModelConfig:
    """Build the MHA config of a preset, or its SHA twin (`max_len` overrides the preset's)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    shape = PRESETS[preset].model_dump()
    shape["max_len"] = max_len or shape["max_len"]
    base = mha(**shape, vocab_size=vocab_size, num_labels=num_labels, **options)
    return base if arch == "mha" else sha_from(base)


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> int:
    """Forward FLOPs per token of the encoder body (multiply-add = 2 FLOPs).

    Counts the dense projections and the two attention matmuls (scores and the weighted
    sum) at `seq_len` (default: the model's max length). Embedding lookups, norms and
    softmax are ignored: they are memory-bound and the same for both shapes.
    """
    s = seq_len or cfg.max_len
    inner = cfg.heads * cfg.head_dim
    proj = 4 * cfg.d_model * inner  # q, k, v, o
    ffn = 2 * cfg.d_model * cfg.ffn_dim
    attn = 2 * s * inner  # QK^T and AV, per token
    per_layer = 2 * (proj + ffn + attn)
    head = 2 * cfg.d_model * cfg.num_labels
    return cfg.layers * per_layer + head
