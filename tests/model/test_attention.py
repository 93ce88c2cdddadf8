"""Attention equals its equations, computed directly; the fused and explicit paths agree."""

import math

import pytest
import torch

from glassformer import ModelConfig, Transformer


def reference_attention(attn, x, causal):
    """softmax(q k^T / sqrt(d_head) + mask) v, then sum over heads of z_h W_O[h], written with einsum."""
    q = torch.einsum("pd,hde->hpe", x, attn.W_Q) + attn.b_Q[:, None]
    k = torch.einsum("pd,hde->hpe", x, attn.W_K) + attn.b_K[:, None]
    v = torch.einsum("pd,hde->hpe", x, attn.W_V) + attn.b_V[:, None]
    scores = torch.einsum("hqe,hke->hqk", q, k) / math.sqrt(attn.d_head)
    if causal:
        n = x.shape[0]
        scores = scores.masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf"))
    z = torch.einsum("hqk,hke->hqe", scores.softmax(-1), v)
    return torch.einsum("hqe,hed->qd", z, attn.W_O) + attn.b_O


@pytest.mark.parametrize("arch", ["decoder", "encoder"])
def test_attention_matches_einsum_of_its_equation(arch):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, d_model=24, n_heads=3, d_vocab=7, n_ctx=9)
    attn = Transformer(cfg).blocks[0].attn
    for p in attn.parameters():  # make biases non-zero so they are tested too
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(9, 24)
    expected = reference_attention(attn, x, causal=arch == "decoder")
    got = attn(x[None], positions=torch.arange(9))[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positional", ["learned", "rope", "alibi"])
@pytest.mark.parametrize("arch", ["decoder", "encoder", "encoder-decoder"])
def test_fused_path_equals_explicit_path(arch, positional):
    torch.manual_seed(1)
    cfg = ModelConfig(arch=arch, d_model=32, n_heads=4, n_kv_heads=2, d_vocab=11, n_ctx=12, positional=positional)
    model = Transformer(cfg).eval()
    tokens = torch.randint(0, 11, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 7:] = 0  # padding
    kwargs = {"src": torch.randint(0, 11, (3, 6))} if arch == "encoder-decoder" else {}
    fused = model(tokens, attention_mask=mask, **kwargs)
    explicit, cache = model.run_with_cache(tokens, attention_mask=mask, names="*attn.pattern", **kwargs)
    assert cache  # the explicit path ran
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


def test_padding_keys_get_no_attention():
    cfg = ModelConfig(arch="encoder", d_model=16, n_heads=2, d_vocab=5, n_ctx=8)
    model = Transformer(cfg).eval()
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    _, cache = model.run_with_cache(torch.randint(0, 5, (1, 8)), attention_mask=mask, names="blocks.0.attn.pattern")
    pattern = cache["blocks.0.attn.pattern"]  # [batch, heads, q, k]
    assert pattern[..., 5:].abs().max() == 0
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))


@pytest.mark.parametrize("extra", [{}, {"n_kv_heads": 2, "bias": False}, {"qk_norm": True, "positional": "rope"}])
def test_fused_qkv_projection_gives_the_same_activations(extra):
    """Inside ``fused_qkv`` (what generate uses) q, k and v come from one matmul against [W_Q | W_K | W_V]:
    the same q, k, v and logits as the three per-head projections, hooks still fire, and on exit the
    model is as before (no fused copy left behind)."""
    from glassformer.model.attention import Attention, fused_qkv

    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=32, n_heads=4, d_vocab=11, **extra)).eval()
    with torch.no_grad():
        for p in model.parameters():  # non-zero biases, so their order in [b_Q | b_K | b_V] is tested too
            p.normal_(std=0.3)
    tokens = torch.randint(0, 11, (2, 9))
    names = ["blocks.1.attn.q", "blocks.1.attn.k", "blocks.1.attn.v"]
    logits, cache = model.run_with_cache(tokens, names=names)
    def unfused(*args):
        raise AssertionError("the per-head projections ran inside fused_qkv")

    with fused_qkv(model), torch.no_grad():  # generate's setting: the fused copy is used only without gradients
        assert all(block.attn.W_QKV is not None for block in model.blocks)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Attention, "_project", staticmethod(unfused))
            fused_logits, fused_cache = model.run_with_cache(tokens, names=names)
    torch.testing.assert_close(fused_logits, logits, atol=1e-5, rtol=1e-5)
    for name in names:
        torch.testing.assert_close(fused_cache[name], cache[name], atol=1e-5, rtol=1e-5)
    assert all(block.attn.W_QKV is None for block in model.blocks)


def test_fused_qkv_leaves_gradients_alone():
    """The fused copy is detached, so with gradients on the per-head projections run and W_Q still learns."""
    from glassformer.model.attention import fused_qkv

    model = Transformer(ModelConfig(d_model=16, n_heads=2, d_vocab=7))
    with fused_qkv(model):
        model(torch.randint(0, 7, (2, 5))).sum().backward()
    assert model.blocks[0].attn.W_Q.grad is not None and model.blocks[0].attn.W_Q.grad.abs().sum() > 0
