"""QK-norm: queries and keys are normalised per head before the dot product, so attention no longer
depends on the size of W_Q and W_K, and the scores are bounded."""

import pytest
import torch
from variant_helpers import scramble

from glassformer import ConfigError, ModelConfig, Transformer


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_attention_is_invariant_to_the_scale_of_W_Q_and_W_K(norm):
    torch.manual_seed(0)
    tokens = torch.randint(0, 9, (2, 10))
    outputs = {}
    for qk_norm in (True, False):
        cfg = ModelConfig(qk_norm=qk_norm, norm=norm, norm_eps=1e-12, bias=False, positional="rope", d_model=32, n_heads=4, d_vocab=9)
        model = scramble(Transformer(cfg))
        before = model(tokens)
        with torch.no_grad():
            for block in model.blocks:
                block.attn.W_Q.mul_(30.0)
                block.attn.W_K.mul_(0.1)
        outputs[qk_norm] = (before, model(tokens))
    torch.testing.assert_close(*outputs[True], atol=1e-4, rtol=1e-4)  # normalised: nothing changes (eps aside)
    assert not torch.allclose(*outputs[False], atol=1e-3)  # the control: without QK-norm the pattern changes


def test_normalised_queries_and_keys_bound_the_scores():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(qk_norm=True, norm="rmsnorm", d_model=32, n_heads=4, d_vocab=9)).eval()
    with torch.no_grad():
        model.blocks[0].attn.W_Q.normal_(std=50.0)  # huge queries
    names = ["blocks.0.attn.q", "blocks.0.attn.q_norm", "blocks.0.attn.q_norm.scale", "blocks.0.attn.k_norm", "blocks.0.attn.scores"]
    _, cache = model.run_with_cache(torch.randint(0, 9, (2, 12)), names=names)
    q, q_hat = cache["blocks.0.attn.q"], cache["blocks.0.attn.q_norm"]  # [batch, pos, heads, d_head]
    torch.testing.assert_close(q_hat, q / q.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt())  # RMSNorm over d_head
    torch.testing.assert_close(q_hat.norm(dim=-1), torch.full(q_hat.shape[:-1], 8**0.5), atol=1e-3, rtol=0)
    scores = cache["blocks.0.attn.scores"]
    assert scores[torch.isfinite(scores)].abs().max() <= 8 / 8**0.5 + 1e-4  # scale * d_head = sqrt(d_head)
    assert cache["blocks.0.attn.q_norm.scale"].shape == (2, 12, 4, 1)


def test_qk_norm_parameters_and_config():
    model = Transformer(ModelConfig(qk_norm=True, norm="layernorm", d_model=32, n_heads=4))
    names = {n for n, _ in model.named_parameters()}
    assert {"blocks.0.attn.q_norm.w", "blocks.0.attn.q_norm.b", "blocks.0.attn.k_norm.w"} <= names
    assert model.blocks[0].attn.q_norm.w.shape == (8,)  # one gain per d_head dimension, shared by heads
    with pytest.raises(ConfigError, match="qk_norm needs norm"):
        ModelConfig(qk_norm=True, norm="none")
