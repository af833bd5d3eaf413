"""One transformer encoder, parameterised so the MHA and SHA shapes share every line.

Attention is written out (matmul, additive mask, softmax, matmul) rather than through
nn.MultiheadAttention, so that the ONNX graph matches the BERT pattern ONNX Runtime's
transformer optimizer fuses, and so a single head is just `heads=1`, not a special case.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.config import ModelConfig

# Additive mask value: large enough that exp() underflows to exactly 0 in fp32, small
# enough to stay finite in fp16.
MASK_VALUE = -10000.0


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.query = nn.Linear(d_model, inner)
        self.key = nn.Linear(d_model, inner)
        self.value = nn.Linear(d_model, inner)
        self.out = nn.Linear(inner, d_model)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> Tensor:
        b, s, _ = x.shape
        return x.view(b, s, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, additive_mask: Tensor) -> Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + additive_mask
        probs = self.dropout(torch.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).transpose(1, 2).contiguous()
        b, s = x.shape[:2]
        return self.out(ctx.view(b, s, self.heads * self.head_dim))


@torch.no_grad()
def init_attention(attn: SelfAttention, d_model: int, scheme: str) -> None:
    """Initialise q/k/v/out so the per-element variance does not depend on the head count.

    `combined` draws q, k and v as slices of one xavier-uniform (3 d_model x d_model)
    in-projection and `out` as a xavier-uniform d_model x d_model matrix: fairseq's
    MultiheadAttention (the code of Admin and of Liu et al.) initialises exactly these
    shapes. An H-head layer and each of the H single-head layers it splits into then draw
    their weights from the same distribution, so the split changes depth, not scale.
    `per_head` is the older scheme: xavier on each projection's own shape, which gives a
    single 32-wide head ~1.26x the weight std of a 4-head layer (1.6x the score std).
    """
    if scheme == "per_head":
        for lin in (attn.query, attn.key, attn.value, attn.out):
            nn.init.xavier_uniform_(lin.weight)
    elif scheme == "combined":
        in_bound = math.sqrt(6.0 / (d_model + 3 * d_model))
        out_bound = math.sqrt(6.0 / (2 * d_model))
        for lin in (attn.query, attn.key, attn.value):
            nn.init.uniform_(lin.weight, -in_bound, in_bound)
        nn.init.uniform_(attn.out.weight, -out_bound, out_bound)
    else:
        raise ValueError(f"unknown attention init {scheme!r}; choose combined or per_head")
    for lin in (attn.query, attn.key, attn.value, attn.out):
        nn.init.zeros_(lin.bias)


class FeedForward(nn.Module):
    def __init__(self, d_model: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, ffn_dim)
        self.down = nn.Linear(ffn_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, additive_mask: Tensor | None = None) -> Tensor:
        return self.down(self.dropout(torch.nn.functional.gelu(self.up(x))))


class Sublayer(nn.Module):
    """A residual block around `f`, with the norm placed as configured.

    pre:   x + f(LN(x))
    post:  LN(x + f(x))
    admin: LN(x * omega + f(x)), omega set by `models.admin.profile`.
    """

    def __init__(self, f: nn.Module, d_model: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.f, self.norm_kind = f, norm
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        # Admin's residual scale; an ordinary parameter, so export sees a Mul by a constant.
        self.omega = nn.Parameter(torch.ones(d_model)) if norm == "admin" else None
        self.observer = None  # set by models.admin while profiling

    def forward(self, x: Tensor, additive_mask: Tensor) -> Tensor:
        if self.norm_kind == "pre":
            return x + self.dropout(self.f(self.norm(x), additive_mask))
        fx = self.dropout(self.f(x, additive_mask))
        if self.observer is not None:
            self.observer(self, x, fx)
        residual = x * self.omega if self.omega is not None else x
        return self.norm(residual + fx)


class Encoder(nn.Module):
    """Token + position embeddings, L layers, masked mean pooling, classifier.

    forward(input_ids, attention_mask) -> (logits, embedding); the embedding is the
    pooled vector, so padding never changes it.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.positions = nn.Embedding(cfg.max_len, cfg.d_model)
        self.embed_norm = nn.LayerNorm(cfg.d_model)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        blocks: list[nn.Module] = []
        for _ in range(cfg.layers):
            blocks.append(
                Sublayer(
                    SelfAttention(cfg.d_model, cfg.heads, cfg.head_dim, cfg.attention_dropout),
                    cfg.d_model,
                    cfg.norm,
                    cfg.dropout,
                )
            )
            blocks.append(
                Sublayer(
                    FeedForward(cfg.d_model, cfg.ffn_dim, cfg.activation_dropout),
                    cfg.d_model,
                    cfg.norm,
                    cfg.dropout,
                )
            )
        self.sublayers = nn.ModuleList(blocks)
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.classifier = nn.Linear(cfg.d_model, cfg.num_labels)
        self.apply(self._init)
        if cfg.attn_init != "per_head":  # per_head is what _init drew: bit-identical to older runs
            for m in self.modules():
                if isinstance(m, SelfAttention):
                    init_attention(m, cfg.d_model, cfg.attn_init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=m.embedding_dim**-0.5)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Per-token hidden states [batch, seq, d_model]."""
        seq = input_ids.shape[1]
        pos = torch.arange(seq, device=input_ids.device).unsqueeze(0)
        x = self.embed_dropout(self.embed_norm(self.tokens(input_ids) + self.positions(pos)))
        # [b, 1, 1, s]; written in BERT's order (unsqueeze, cast, 1 - m, scale) because that is
        # the mask pattern ONNX Runtime's transformer optimizer needs to fuse Attention
        additive = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * MASK_VALUE
        for sub in self.sublayers:
            x = sub(x, additive)
        return self.final_norm(x)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encode(input_ids, attention_mask)
        mask = attention_mask.to(h.dtype).unsqueeze(-1)
        pooled = (h * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.classifier(pooled), pooled


def count_parameters(model: nn.Module, *, body_only: bool = False) -> int:
    """Trainable parameters; `body_only` leaves out embeddings and the classifier."""
    skip = ("tokens.", "positions.", "classifier.", "embed_norm.") if body_only else ()
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith(skip))


def build(cfg: ModelConfig) -> Encoder:
    return Encoder(cfg)
