"""The residual stream accumulates and decomposes exactly, per-head outputs add up to attn_out, and the
cached final-norm scale makes the decomposition linear through ln_final."""

import pytest
import torch
from lens_models import ARCHS, inputs_for, make_model

from glassformer.errors import InputError
from glassformer.lens import run_with_cache


@pytest.mark.parametrize("overrides", ARCHS)
@pytest.mark.parametrize("heads", [False, True])
def test_decomposition_sums_to_the_final_residual_stream(overrides, heads):
    model = make_model(**overrides)
    _, cache = run_with_cache(model, inputs_for(model))
    values, labels = cache.decompose_resid(heads=heads)
    final = cache[f"blocks.{model.config.n_layers - 1}.resid_post"]
    assert values.shape == (len(labels), *final.shape)
    torch.testing.assert_close(values.sum(0), final, atol=1e-5, rtol=1e-5)
    assert labels[0] in ("embed", "embed_norm")
    assert ("L1H3" in labels) == heads and ("L1_attn" in labels) == (not heads)


def test_decomposition_up_to_a_layer_equals_that_layers_input():
    model = make_model()
    _, cache = run_with_cache(model, inputs_for(model))
    values, labels = cache.decompose_resid(layer=1, heads=True)
    torch.testing.assert_close(values.sum(0), cache["blocks.1.resid_pre"], atol=1e-5, rtol=1e-5)
    assert labels == ["embed", "pos_embed", "L0H0", "L0H1", "L0H2", "L0H3", "L0_mlp", "bias"]


def test_encoder_stack_of_an_encoder_decoder_decomposes_too():
    model = make_model(arch="encoder-decoder")
    _, cache = run_with_cache(model, inputs_for(model))
    values, labels = cache.decompose_resid(stack="encoder", heads=True)
    torch.testing.assert_close(values.sum(0), cache["encoder.blocks.1.resid_post"], atol=1e-5, rtol=1e-5)
    assert not any(label.startswith("L0C") for label in labels)  # the encoder has no cross-attention
    decoder_labels = cache.decompose_resid(heads=True).labels
    assert "L0C2" in decoder_labels  # the decoder's cross-attention heads are components


def test_head_results_are_z_times_W_O_and_sum_to_attn_out():
    model = make_model()
    _, cache = run_with_cache(model, inputs_for(model))
    results = cache.head_results(1)  # [heads, batch, pos, d_model]
    z, W_O = cache["blocks.1.attn.z"], model.blocks[1].attn.W_O
    torch.testing.assert_close(results[2], z[:, :, 2] @ W_O[2])
    torch.testing.assert_close(results.sum(0) + model.blocks[1].attn.b_O, cache["blocks.1.attn_out"], atol=1e-5, rtol=1e-5)
    stacked, labels = cache.stack_head_results()
    assert labels[:5] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0"] and stacked.shape[0] == 8


def test_accumulated_resid_reads_the_stream_at_every_block_boundary():
    model = make_model(arch="encoder-decoder")
    _, cache = run_with_cache(model, inputs_for(model))
    values, labels = cache.accumulated_resid(incl_mid=True)
    assert labels == ["0_pre", "0_mid", "0_mid_cross", "1_pre", "1_mid", "1_mid_cross", "final"]
    assert torch.equal(values[3], cache["blocks.1.resid_pre"]) and torch.equal(values[-1], cache["blocks.1.resid_post"])
    values, labels = cache.accumulated_resid(layer=1)
    assert labels == ["0_pre", "1_pre"] and torch.equal(values[1], cache["blocks.1.resid_pre"])


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_apply_ln_final_is_linear_with_the_cached_scale(norm):
    model = make_model(norm=norm)
    _, cache = run_with_cache(model, inputs_for(model))
    values, _ = cache.decompose_resid(heads=True)
    normed = cache.apply_ln_final(values)  # [components, batch, pos, d_model]
    bias = cache.final_norm_bias()
    expected = cache["ln_final"] - (bias if bias is not None else 0)
    torch.testing.assert_close(normed.sum(0), expected, atol=1e-5, rtol=1e-5)
    at_pos = cache.apply_ln_final(values[:, :, 4], pos=4)  # a stack already indexed at one position
    torch.testing.assert_close(at_pos, normed[:, :, 4])


def test_apply_ln_final_is_the_identity_without_a_final_norm():
    model = make_model(norm="none", attn_only=True)  # a compiled RASP model has norm="none"
    _, cache = run_with_cache(model, inputs_for(model))
    values, _ = cache.decompose_resid()
    assert cache.apply_ln_final(values) is values
    assert cache.final_norm_bias() is None


def test_errors_name_the_problem():
    model = make_model()
    _, cache = run_with_cache(model, inputs_for(model), names=["blocks.0.resid_pre"])
    with pytest.raises(InputError, match="no activation .blocks.1.resid_pre"):
        cache.accumulated_resid()
    post = make_model(norm_position="post")
    _, cache = run_with_cache(post, inputs_for(post))
    with pytest.raises(InputError, match="pre-norm"):
        cache.decompose_resid()
    with pytest.raises(InputError, match="layer"):
        cache.accumulated_resid(layer=5)
    with pytest.raises(InputError, match="stack"):
        cache.accumulated_resid(stack="encoder")  # a decoder-only model has no encoder
    with pytest.raises(InputError, match="tokens"):
        run_with_cache(model, {"src": torch.zeros(1, 3, dtype=torch.long)})
