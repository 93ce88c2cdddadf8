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


@pytest.mark.parametrize("overrides", [{}, {"act": "swiglu", "n_kv_heads": 2}, {"arch": "encoder-decoder"}])
def test_neuron_decomposition_sums_exactly(overrides):
    """mlp_out = sum_i post_i W_out[i] + b_out, so the stream split into neurons still sums to itself,
    and direct logit attribution over neurons still sums to the logit difference."""
    from glassformer.lens import direct_logit_attribution

    model = make_model(**overrides)
    _, cache = run_with_cache(model, inputs_for(model))
    neurons = cache.neuron_results(1)  # [d_mlp, batch, pos, d_model]
    torch.testing.assert_close(neurons.sum(0) + model.blocks[1].mlp.b_out, cache["blocks.1.mlp_out"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cache.neuron_results(1, pos=-1), neurons[:, :, -1])
    resid, labels = cache.decompose_resid(heads=True, neurons=True, pos=3)  # [components, batch, d_model]
    assert labels.count("bias") == 1 and sum(label.startswith("L1N") for label in labels) == model.config.d_mlp
    torch.testing.assert_close(resid.sum(0), cache["blocks.1.resid_post"][:, 3], atol=1e-5, rtol=1e-5)
    attribution = direct_logit_attribution(model, cache, 3, 5, neurons=True)
    torch.testing.assert_close(attribution.values.sum(0), attribution.total, atol=1e-4, rtol=1e-4)
    coarse = direct_logit_attribution(model, cache, 3, 5)  # layer 1's MLP as one term, b_out included
    split = attribution.values[[i for i, label in enumerate(attribution.labels) if label.startswith("L1N")]].sum(0)
    direction = (model.unembed.weight[:, 3] - model.unembed.weight[:, 5]).detach()
    b_out = cache.apply_ln_final(model.blocks[1].mlp.b_out.detach().expand(3, 32), pos=-1) @ direction  # [batch]
    torch.testing.assert_close(split + b_out, coarse.values[coarse.labels.index("L1_mlp")], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_apply_ln_uses_any_layers_cached_scale(norm):
    model = make_model(norm=norm)
    _, cache = run_with_cache(model, inputs_for(model))
    for layer, which, reads in [(0, "ln1", "blocks.0.resid_pre"), (1, "ln1", "blocks.1.resid_pre"), (1, "ln2", "blocks.1.resid_mid")]:
        resid = cache[reads]
        parts = torch.stack([resid * 0.25, resid * 0.75])  # any stack that sums to the stream
        normed = cache.apply_ln(parts, layer, which).sum(0)
        norm_module = getattr(model.blocks[layer], which)
        bias = norm_module.b.detach() if getattr(norm_module, "b", None) is not None else 0
        torch.testing.assert_close(normed + bias, cache[f"blocks.{layer}.{which}"], atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match="has no norm 'ln3'"):
        cache.apply_ln(resid, 0, "ln3")


def test_batch_dim_removal_moving_and_familiar_names():
    model = make_model()
    tokens = inputs_for(model, batch=1)
    _, cache = run_with_cache(model, tokens)
    single = cache.remove_batch_dim()
    assert single["blocks.0.attn.pattern"].shape == (4, 10, 10) and single["pos_embed"].shape == (10, 32)
    assert torch.equal(single["blocks.1.resid_post"], cache["blocks.1.resid_post"][0])
    with pytest.raises(InputError, match="batch dimension"):
        single.decompose_resid()
    with pytest.raises(InputError, match="batch of one"):
        run_with_cache(model, inputs_for(model, batch=2))[1].remove_batch_dim()
    doubled = cache.to(torch.float64)
    assert doubled["embed"].dtype == torch.float64 and cache["embed"].dtype == torch.float32
    assert cache["blocks.0.attn.hook_pattern"] is cache["blocks.0.attn.pattern"]
    assert cache["resid_pre", 1] is cache["blocks.1.resid_pre"] and "blocks.0.hook_resid_mid" in cache
    with pytest.raises(InputError, match="cached only when named"):
        cache["blocks.0.attn.hook_result"]


def test_lens_run_with_cache_stores_gradients():
    model = make_model()
    tokens = inputs_for(model)
    loss, cache = run_with_cache(model, tokens, names="blocks.*.attn.z", grads=True, return_type="loss")
    assert loss.dim() == 0 and set(cache) == {f"blocks.{l}.attn.z{g}" for l in range(2) for g in ("", "_grad")}
    assert cache["blocks.1.attn.hook_z_grad"].shape == cache["blocks.1.attn.z"].shape
