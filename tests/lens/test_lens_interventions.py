"""Ablations replace exactly the chosen activations; patching restores exactly what it copies."""

import pytest
import torch
from lens_models import inputs_for, make_model

from glassformer.errors import InputError
from glassformer.lens import ablate, logit_diff_metric, patch_heads, patch_layers_positions, run_ablated, run_with_cache


def cached_under(model, inputs, **what):
    with ablate(model, **what):
        return run_with_cache(model, inputs)[1]


def test_zero_ablating_every_head_of_a_layer_leaves_only_b_O():
    model = make_model()
    tokens = inputs_for(model)
    cache = cached_under(model, tokens, heads=[(1, h) for h in range(4)])
    expected = model.blocks[1].attn.b_O.detach().expand_as(cache["blocks.1.attn_out"])
    torch.testing.assert_close(cache["blocks.1.attn_out"], expected)
    plain = run_with_cache(model, tokens)[1]
    torch.testing.assert_close(cache["blocks.0.attn_out"], plain["blocks.0.attn_out"])  # layer 0 untouched


def test_mean_ablation_uses_the_reference_batch_mean_at_chosen_positions_only():
    model = make_model()
    tokens = inputs_for(model)
    reference = torch.randint(0, 20, (8, 10), generator=torch.Generator().manual_seed(3))
    ref_z = run_with_cache(model, reference)[1]["blocks.0.attn.z"].mean(0)  # [pos, heads, d_head]
    plain = run_with_cache(model, tokens)[1]["blocks.0.attn.z"]
    z = cached_under(model, tokens, heads=[(0, 2)], positions=[1, 4], mode="mean", reference=reference)["blocks.0.attn.z"]
    torch.testing.assert_close(z[:, [1, 4], 2], ref_z[[1, 4], 2].expand(3, -1, -1))
    changed = torch.zeros_like(z, dtype=torch.bool)
    changed[:, [1, 4], 2] = True
    assert torch.equal(z[~changed], plain[~changed])


def test_mlp_and_position_ablation():
    model = make_model()
    tokens = inputs_for(model)
    cache = cached_under(model, tokens, mlps=[0])
    assert (cache["blocks.0.mlp_out"] == 0).all()
    cache = cached_under(model, tokens, positions=[0, 2])  # positions alone: the input embeddings there
    assert (cache["blocks.0.resid_pre"][:, [0, 2]] == 0).all() and (cache["blocks.0.resid_pre"][:, 1] != 0).any()
    logits = run_ablated(model, tokens, mlps=[0, 1])
    assert logits.shape == (3, 10, 20) and not torch.allclose(logits, model(tokens))


def test_ablation_works_on_an_encoder_decoder_and_its_cross_attention():
    model = make_model(arch="encoder-decoder")
    inputs = inputs_for(model)
    cache = cached_under(model, inputs, cross_heads=[(0, 1)])
    assert (cache["blocks.0.cross_attn.z"][:, :, 1] == 0).all()
    cache = cached_under(model, inputs, heads=[(1, 0)], stack="encoder")
    assert (cache["encoder.blocks.1.attn.z"][:, :, 0] == 0).all()


def test_ablation_errors():
    model = make_model()
    with pytest.raises(InputError, match="reference"):
        run_ablated(model, inputs_for(model), heads=[(0, 0)], mode="mean")
    with pytest.raises(InputError, match="head index"):
        run_ablated(model, inputs_for(model), heads=[(0, 9)])
    with pytest.raises(InputError, match="nothing to ablate"):
        run_ablated(model, inputs_for(model))
    with pytest.raises(InputError, match="attention-only"):
        run_ablated(make_model(attn_only=True), inputs_for(model), mlps=[0])


def test_patching_the_one_differing_input_position_restores_everything():
    model = make_model()
    clean = inputs_for(model)
    corrupted = clean.clone()
    corrupted[:, 3] = (clean[:, 3] + 1) % 20
    metric = logit_diff_metric(2, 5)
    result = patch_layers_positions(model, clean, corrupted, metric)
    assert result.values.shape == (2, 10)
    torch.testing.assert_close(result.values[0, 3], torch.tensor(1.0))  # the whole difference enters there
    others = [p for p in range(10) if p != 3]
    assert result.values[0, others].abs().max() < 1e-5  # identical activations: patching changes nothing
    assert result.values[1, :3].abs().max() < 1e-5  # a causal model: earlier positions never saw the change
    with torch.no_grad():
        assert result.clean == pytest.approx(float(metric(model(clean))))


def test_patching_heads_gives_a_layers_by_heads_map_and_its_plot(tmp_path):
    model = make_model(attn_only=True)
    clean = inputs_for(model)
    corrupted = torch.randint(0, 20, clean.shape, generator=torch.Generator().manual_seed(9))
    result = patch_heads(model, clean, corrupted, logit_diff_metric(1, 2))
    assert result.values.shape == (2, 4) and torch.isfinite(result.values).all()
    assert result.col_labels == ["H0", "H1", "H2", "H3"]
    fig = result.plot(tmp_path / "heads.png")
    assert (tmp_path / "heads.png").stat().st_size > 5_000 and fig is not None
    with pytest.raises(InputError, match="same"):
        patch_heads(model, clean, clean, logit_diff_metric(1, 2))
