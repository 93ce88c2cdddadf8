"""Relative positional schemes: RoPE, ALiBi and T5 scores depend only on the offset i - j; T5's buckets are
Hugging Face's; ALiBi and T5 add exactly their bias; which schemes run past n_ctx."""

import pytest
import torch
from variant_helpers import scramble

from glassformer import ConfigError, InputError, ModelConfig, Transformer
from glassformer.model.positional import Rotary, t5_bucket


@pytest.mark.parametrize(
    "positional, extra",
    [("rope", {}), ("rope", {"rope_fraction": 0.5}), ("alibi", {}), ("t5", {}), ("t5", {"qk_norm": True})],
)
@pytest.mark.parametrize("arch", ["decoder", "encoder"])
def test_scores_depend_only_on_relative_offsets(arch, positional, extra):
    """Layer 0 sees only token embeddings, so the scores between the same tokens must not change when the
    whole sequence is shifted by 13 positions (absolute positions would change them)."""
    model = scramble(Transformer(ModelConfig(arch=arch, positional=positional, d_model=32, n_heads=4, d_vocab=9, n_ctx=64, **extra)))
    tokens = torch.randint(0, 9, (2, 11))
    shifted = torch.cat([torch.randint(0, 9, (2, 13)), tokens], dim=1)  # the same tokens at positions 13..23
    _, a = model.run_with_cache(tokens, names="blocks.0.attn.scores")
    _, b = model.run_with_cache(shifted, names="blocks.0.attn.scores")
    a, b = a["blocks.0.attn.scores"], b["blocks.0.attn.scores"][:, :, 13:, 13:]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_learned_positions_are_not_relative():  # the control: the test above can fail
    model = scramble(Transformer(ModelConfig(positional="learned", d_model=32, n_heads=4, d_vocab=9, n_ctx=64)))
    tokens = torch.randint(0, 9, (2, 11))
    _, a = model.run_with_cache(tokens, names="blocks.0.attn.scores")
    _, b = model.run_with_cache(torch.cat([tokens, tokens], 1), names="blocks.0.attn.scores")
    assert not torch.allclose(a["blocks.0.attn.scores"], b["blocks.0.attn.scores"][:, :, 11:, 11:], atol=1e-3)


def test_rotary_dot_product_is_a_function_of_the_offset():
    rotary = Rotary(d_head=8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i, j):
        return (rotary(q, torch.tensor([i])) * rotary(k, torch.tensor([j]))).sum().item()

    for i, j, shift in [(5, 2, 100), (0, 7, 31), (40, 40, 3)]:
        assert score(i + shift, j + shift) == pytest.approx(score(i, j), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)


def test_alibi_and_t5_add_exactly_their_bias():
    """With W_Q = 0 and no biases, q = 0, so the scores are the positional bias alone."""
    for positional in ("alibi", "t5"):
        model = scramble(Transformer(ModelConfig(positional=positional, d_model=16, n_heads=4, d_vocab=5, bias=False)))
        attn = model.blocks[0].attn
        with torch.no_grad():
            attn.W_Q.zero_()
        _, cache = model.run_with_cache(torch.randint(0, 5, (1, 40)), names="blocks.0.attn.scores")
        scores = cache["blocks.0.attn.scores"][0]  # [heads, q, k]
        i, j = torch.arange(40)[:, None], torch.arange(40)[None, :]
        if positional == "alibi":
            slopes = torch.tensor([2 ** (-8 * (h + 1) / 4) for h in range(4)])  # the paper's slopes for 4 heads
            expected = -slopes[:, None, None] * (i - j).abs()
        else:
            expected = attn.score_bias.W_bias[t5_bucket(j - i, bidirectional=False)].permute(2, 0, 1)
        causal = (j <= i).expand(4, 40, 40)
        torch.testing.assert_close(scores[causal], expected[causal].float())
        assert torch.isinf(scores[~causal]).all()


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_buckets_match_hugging_face(bidirectional):
    transformers = pytest.importorskip("transformers")
    from transformers.models.t5.modeling_t5 import T5Attention

    offsets = torch.arange(-300, 301)[None, :]
    for n_buckets, max_distance in [(32, 128), (16, 40)]:
        ours = t5_bucket(offsets, bidirectional, n_buckets, max_distance)
        theirs = T5Attention._relative_position_bucket(offsets, bidirectional, n_buckets, max_distance)
        assert torch.equal(ours, theirs)
    assert transformers is not None


def test_t5_bias_is_learned_per_head_and_layer():
    model = Transformer(ModelConfig(positional="t5", n_layers=2, n_heads=4, t5_buckets=16, t5_max_distance=64))
    names = [n for n, _ in model.named_parameters() if "W_bias" in n]
    assert names == ["blocks.0.attn.score_bias.W_bias", "blocks.1.attn.score_bias.W_bias"]
    assert model.blocks[0].attn.score_bias.W_bias.shape == (16, 4)
    with pytest.raises(ConfigError, match="t5_max_distance"):
        ModelConfig(positional="t5", t5_buckets=32, t5_max_distance=16)


@pytest.mark.parametrize("positional", ["sinusoidal", "none", "rope", "alibi", "t5"])
def test_schemes_without_a_position_table_run_past_n_ctx(positional):
    model = Transformer(ModelConfig(positional=positional, d_model=16, n_heads=2, d_vocab=5, n_ctx=8)).eval()
    assert model(torch.randint(0, 5, (1, 20))).shape == (1, 20, 5)
    learned = Transformer(ModelConfig(positional="learned", d_model=16, n_heads=2, d_vocab=5, n_ctx=8))
    with pytest.raises(InputError, match="n_ctx = 8"):
        learned(torch.randint(0, 5, (1, 20)))


@pytest.mark.parametrize("positional", ["rope", "sinusoidal"])
def test_frequencies_survive_a_change_of_dtype(positional):
    """model.to(bfloat16) must not round theta_i to bf16 (position 1000's angle would be off by radians): the
    table is recomputed in float32 for half-precision models and in float64 for float64 ones."""
    model = Transformer(ModelConfig(d_model=64, n_heads=4, d_vocab=11, n_ctx=2048, positional=positional))
    name, exact = next((n, b.clone()) for n, b in model.named_buffers() if n.endswith("inv_freq"))
    half = dict(model.to(torch.bfloat16).named_buffers())[name]
    assert half.dtype == torch.float32 and torch.equal(half, exact)
    wide = dict(model.double().named_buffers())[name]
    assert wide.dtype == torch.float64
    torch.testing.assert_close(wide.float(), exact, rtol=1e-7, atol=0)
    assert not torch.equal(wide, exact.double())  # computed in float64, not widened from float32
