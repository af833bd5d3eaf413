"""Encoder shapes, the MHA -> SHA mapping, Admin, masking."""

from __future__ import annotations

import pytest
import torch

from models import admin
from models.config import PRESETS, flops_per_token, from_preset, mha, sha_from
from models.encoder import Sublayer, build, count_parameters


def _pair(preset: str, norm: str = "admin"):
    kw = dict(vocab_size=5000, num_labels=45, norm=norm)
    return from_preset(preset, "mha", **kw), from_preset(preset, "sha", **kw)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_sha_parameters_within_two_percent_of_mha(preset: str) -> None:
    m_cfg, s_cfg = _pair(preset)
    # 'base' is 100M parameters: count from the meta device instead of allocating.
    with torch.device("meta"):
        m, s = build(m_cfg), build(s_cfg)
    pm, ps = count_parameters(m), count_parameters(s)
    assert abs(ps - pm) / pm < 0.02, (preset, pm, ps)
    assert ps > pm  # the deep model only adds LayerNorm and omega vectors


@pytest.mark.parametrize("preset", ["small", "base"])
def test_body_parameters_within_two_percent(preset: str) -> None:
    m_cfg, s_cfg = _pair(preset)
    with torch.device("meta"):
        pm, ps = (
            count_parameters(build(m_cfg), body_only=True),
            count_parameters(build(s_cfg), body_only=True),
        )
    assert abs(ps - pm) / pm < 0.02


def test_mha_to_sha_mapping_follows_the_paper() -> None:
    cfg = mha(6, 8, d_model=512, head_dim=64, ffn_dim=2048, vocab_size=100, num_labels=2)
    sha = sha_from(cfg)
    assert (sha.layers, sha.heads, sha.head_dim, sha.ffn_dim, sha.d_model) == (48, 1, 64, 256, 512)
    bert = sha_from(mha(12, 12, d_model=768, head_dim=64, ffn_dim=3072, vocab_size=100, num_labels=2))
    assert bert.label == "144L-1H" and bert.ffn_dim == 256
    # Same FLOPs per token at every sequence length: the split moves work, it adds none.
    for seq in (1, 64, 512):
        assert flops_per_token(cfg, seq) == flops_per_token(sha, seq)


def test_sha_from_rejects_indivisible_ffn() -> None:
    cfg = mha(2, 3, d_model=48, head_dim=16, ffn_dim=100, vocab_size=100, num_labels=2)
    with pytest.raises(ValueError, match="divisible"):
        sha_from(cfg)


def test_attention_split_is_an_exact_sum_of_single_heads() -> None:
    """An H-head attention output equals the sum of H single-head modules (Liu et al. eq. 1)."""
    from models.encoder import SelfAttention

    torch.manual_seed(0)
    d, h, hd = 32, 4, 8
    multi = SelfAttention(d, h, hd, 0.0).eval()
    singles = [SelfAttention(d, 1, hd, 0.0).eval() for _ in range(h)]
    with torch.no_grad():
        for i, s in enumerate(singles):
            rows = slice(i * hd, (i + 1) * hd)
            for name in ("query", "key", "value"):
                getattr(s, name).weight.copy_(getattr(multi, name).weight[rows])
                getattr(s, name).bias.copy_(getattr(multi, name).bias[rows])
            s.out.weight.copy_(multi.out.weight[:, rows])
            s.out.bias.copy_(multi.out.bias / h)
    x = torch.randn(2, 5, d)
    mask = torch.zeros(2, 1, 1, 5)
    torch.testing.assert_close(multi(x, mask), sum(s(x, mask) for s in singles), atol=1e-5, rtol=1e-5)


def test_admin_omegas_are_finite_positive_and_grow() -> None:
    torch.manual_seed(0)
    _, cfg = _pair("tiny")
    model = build(cfg)
    ids = torch.randint(2, 5000, (8, 12))
    mask = torch.ones_like(ids)
    omegas = admin.profile(model, ids, mask)
    assert len(omegas) == 2 * cfg.layers
    assert omegas[0] == 1.0
    assert all(torch.isfinite(torch.tensor(o)) and o > 0 for o in omegas)
    assert omegas[-1] > omegas[0]  # later sublayers lean more on their residual
    # Every omega vector holds the profiled value, uniformly.
    subs = [m for m in model.sublayers if isinstance(m, Sublayer)]
    for sub, w in zip(subs, omegas, strict=True):
        assert torch.allclose(sub.omega, torch.full_like(sub.omega, w))


def test_admin_changes_the_forward_pass_only_by_the_residual_scale() -> None:
    torch.manual_seed(0)
    _, cfg = _pair("tiny")
    model = build(cfg).eval()
    sub = model.sublayers[0]
    x = torch.randn(2, 6, cfg.d_model)
    mask = torch.zeros(2, 1, 1, 6)
    with torch.no_grad():
        before = sub(x, mask)
        fx = sub.f(x, mask)
        sub.omega.fill_(2.5)
        after = sub(x, mask)
        torch.testing.assert_close(after, sub.norm(x * 2.5 + fx))
        torch.testing.assert_close(before, sub.norm(x + fx))


def test_admin_profile_needs_admin_norm() -> None:
    cfg = from_preset("tiny", "sha", vocab_size=100, num_labels=3, norm="pre")
    with pytest.raises(ValueError, match="Admin"):
        admin.profile(build(cfg), torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))


@pytest.mark.parametrize("norm", ["pre", "post", "admin"])
def test_padding_does_not_change_the_pooled_output(norm: str) -> None:
    torch.manual_seed(0)
    cfg = from_preset("tiny", "sha", vocab_size=300, num_labels=5, norm=norm)
    model = build(cfg).eval()
    ids = torch.randint(2, 300, (1, 7))
    logits, emb = model(ids, torch.ones_like(ids))
    padded = torch.cat([ids, torch.zeros(1, 9, dtype=torch.long)], dim=1)
    padded[0, 7:] = torch.randint(2, 300, (9,))  # garbage under the mask must not matter either
    mask = torch.cat([torch.ones(1, 7, dtype=torch.long), torch.zeros(1, 9, dtype=torch.long)], dim=1)
    logits_p, emb_p = model(padded, mask)
    torch.testing.assert_close(emb, emb_p, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, logits_p, atol=1e-5, rtol=1e-5)


def test_outputs_have_the_contract_shapes() -> None:
    cfg = from_preset("tiny", "mha", vocab_size=300, num_labels=45)
    logits, emb = build(cfg).eval()(torch.ones(3, 10, dtype=torch.long), torch.ones(3, 10, dtype=torch.long))
    assert logits.shape == (3, 45) and emb.shape == (3, cfg.d_model)


def _attention_weights(model, name: str) -> torch.Tensor:
    """Every attention layer's `name` weight (query/key/value/out), flattened together."""
    from models.encoder import SelfAttention

    return torch.cat(
        [getattr(m, name).weight.detach().flatten() for m in model.modules() if isinstance(m, SelfAttention)]
    )


@pytest.mark.parametrize("arch", ["mha", "sha"])
def test_combined_attention_init_has_the_same_weight_std_for_any_head_count(arch: str) -> None:
    """q/k/v match xavier on the (3d x d) in-projection, out on d x d, whatever the heads (4 or 1)."""
    torch.manual_seed(0)
    cfg = from_preset("small", arch, vocab_size=300, num_labels=45)
    assert cfg.attn_init == "combined" and cfg.heads == (4 if arch == "mha" else 1)
    model = build(cfg)
    d = cfg.d_model
    for name in ("query", "key", "value"):
        std = float(_attention_weights(model, name).std())
        assert std == pytest.approx((2.0 / (d + 3 * d)) ** 0.5, rel=0.03), (name, std)
    assert float(_attention_weights(model, "out").std()) == pytest.approx((2.0 / (2 * d)) ** 0.5, rel=0.03)


def test_per_head_init_is_still_selectable_and_scales_with_head_count() -> None:
    """The older scheme: xavier on each projection's own shape (d -> heads * head_dim)."""
    torch.manual_seed(0)
    kw = dict(vocab_size=300, num_labels=45, attn_init="per_head")
    stds = {}
    for arch in ("mha", "sha"):
        cfg = from_preset("small", arch, **kw)
        inner = cfg.heads * cfg.head_dim
        stds[arch] = float(_attention_weights(build(cfg), "query").std())
        assert stds[arch] == pytest.approx((2.0 / (cfg.d_model + inner)) ** 0.5, rel=0.03)
    assert stds["sha"] / stds["mha"] == pytest.approx(1.26, abs=0.03)


def _score_std(cfg) -> float:
    """Std of the attention scores (q.k / sqrt(head_dim)) of every layer, on unit-variance input."""
    from models.encoder import SelfAttention

    model = build(cfg)
    x = torch.randn(4, 16, cfg.d_model)
    scores = []
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SelfAttention):
                q, k = m._split(m.query(x)), m._split(m.key(x))
                scores.append((q @ k.transpose(-1, -2) / cfg.head_dim**0.5).flatten())
    return float(torch.cat(scores).std())


def test_init_parity_gives_single_and_multi_head_layers_the_same_score_spread() -> None:
    """The issue's 1.6x: per_head gives a 1-head layer ~1.6x the score std; combined gives ~1x."""
    torch.manual_seed(0)
    kw = dict(vocab_size=300, num_labels=45)
    for init, ratio in (("combined", 1.0), ("per_head", 1.6)):
        mha_cfg, sha_cfg = (from_preset("small", a, attn_init=init, **kw) for a in ("mha", "sha"))
        assert _score_std(sha_cfg) / _score_std(mha_cfg) == pytest.approx(ratio, rel=0.1), init


@pytest.mark.parametrize("init", ["combined", "per_head"])
def test_admin_profiles_under_either_attention_init(init: str) -> None:
    torch.manual_seed(0)
    cfg = from_preset("small", "sha", vocab_size=5000, num_labels=45, attn_init=init)
    ids = torch.randint(2, 5000, (16, 20))
    omegas = admin.profile(build(cfg), ids, torch.ones_like(ids))
    assert omegas[0] == 1.0 and all(0 < a <= b < 10 for a, b in zip(omegas, omegas[1:], strict=False))
    assert omegas[-1] > 2.0  # 32 sublayers accumulate branch variance under either init


def test_unknown_attention_init_is_rejected() -> None:
    from pydantic import ValidationError

    from models.encoder import SelfAttention, init_attention

    with pytest.raises(ValidationError, match="attn_init"):
        from_preset("tiny", "sha", vocab_size=300, num_labels=45, attn_init="orthogonal")
    with pytest.raises(ValueError, match="unknown attention init"):
        init_attention(SelfAttention(8, 2, 4, 0.0), 8, "orthogonal")
