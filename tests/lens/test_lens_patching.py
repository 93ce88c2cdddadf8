"""Batched patching gives the values of one forward per cell, and patches exactly the cell it names."""

import pytest
import torch
from lens_models import ARCHS, inputs_for, make_model

from glassformer.errors import InputError
from glassformer.lens import logit_diff_metric, patch_cells, patch_heads, patch_heads_positions, patch_layers_positions
from glassformer.lens.patching import PER_HEAD


def corrupt(inputs, position: int = 4):
    """The same inputs with one token changed at ``position``."""
    if isinstance(inputs, dict):
        return {**inputs, "tokens": corrupt(inputs["tokens"], position)}
    out = inputs.clone()
    out[:, position] = (out[:, position] + 5) % 20
    return out


@pytest.mark.parametrize("overrides", ARCHS)
def test_batched_patching_equals_one_forward_per_cell(overrides):
    model = make_model(**overrides)
    clean = inputs_for(model, batch=2, pos=6)
    corrupted = corrupt(clean)
    metric = logit_diff_metric(3, 7)
    batched = patch_layers_positions(model, clean, corrupted, metric)
    looped = patch_layers_positions(model, clean, corrupted, metric, cells_per_forward=1)
    torch.testing.assert_close(batched.values, looped.values, atol=1e-4, rtol=1e-4)
    for what in ("z", "k", "pattern") if overrides.get("attention") != "linear" else ("z",):
        batched = patch_heads_positions(model, clean, corrupted, metric, what=what, cells_per_forward=5)
        looped = patch_heads_positions(model, clean, corrupted, metric, what=what, cells_per_forward=1)
        torch.testing.assert_close(batched.values, looped.values, atol=1e-4, rtol=1e-4)


def test_every_per_head_activation_patches_by_layer_position_and_head():
    model = make_model(n_kv_heads=2)
    clean = inputs_for(model, batch=2, pos=6)
    corrupted = corrupt(clean, position=2)
    metric = logit_diff_metric(3, 7)
    for what in PER_HEAD:
        result = patch_heads_positions(model, clean, corrupted, metric, what=what)
        heads = 2 if what in ("k", "v", "k_input", "v_input") else 4
        assert result.values.shape == (2, 6, heads) and result.head_labels == [f"H{h}" for h in range(heads)]
        # before the corrupted position nothing differs (causal): patching there changes nothing
        assert result.values[:, :2].abs().max() < 1e-4, what
        if what in ("k", "v", "k_input", "v_input"):  # keys and values at the changed position carry its token
            assert result.values[0, 2].abs().max() > 1e-3, what
        per_head = patch_heads(model, clean, corrupted, metric, what=what, positions=[2])  # [layers, heads]
        torch.testing.assert_close(per_head.values, result.values[:, 2], atol=1e-4, rtol=1e-4)


def test_in_a_linear_model_the_head_effects_add_up_to_one():
    """One attention-only layer without norms: the logits are linear in each head's z, so the normalised
    effects of patching every head at the last position (or every head at every position) sum to 1."""
    model = make_model(n_layers=1, norm="none", attn_only=True, positional="none")
    clean = inputs_for(model, batch=3, pos=7)
    corrupted = corrupt(clean, position=5)
    metric = logit_diff_metric(2, 9)
    by_head = patch_heads(model, clean, corrupted, metric, positions=[6])
    assert abs(float(by_head.values.sum()) - 1) < 1e-4
    cells = patch_heads_positions(model, clean, corrupted, metric, what="result")
    assert abs(float(cells.values.sum()) - 1) < 1e-4
    torch.testing.assert_close(cells.values[:, 6], by_head.values, atol=1e-4, rtol=1e-4)


def test_patching_one_cell_by_hand():
    model = make_model()
    clean, corrupted = inputs_for(model, batch=2, pos=6), corrupt(inputs_for(model, batch=2, pos=6), 3)
    metric = logit_diff_metric(1, 2)
    values, clean_value, corrupted_value = patch_cells(
        model, clean, corrupted, metric, [("blocks.1.attn.q", (4, 2)), ("blocks.0.hook_resid_pre", (3,))])
    _, clean_cache = model.run_with_cache(clean)

    def patch(x, hook):
        x = x.clone()
        x[:, 4, 2] = clean_cache["blocks.1.attn.q"][:, 4, 2]
        return x

    with torch.no_grad(), model.hooks({"blocks.1.attn.q": patch}):
        assert abs(float(metric(model(corrupted))) - float(values[0])) < 1e-5
    assert abs(float(values[1]) - clean_value) < 1e-4  # the stream entering layer 0 at the changed position: all of it
    assert corrupted_value != clean_value


def test_patching_errors():
    model = make_model()
    clean = inputs_for(model, batch=2, pos=6)
    metric = logit_diff_metric(1, 2)
    with pytest.raises(InputError, match="what must be one of"):
        patch_heads(model, clean, corrupt(clean), metric, what="mlp")
    with pytest.raises(InputError, match="cells_per_forward"):
        patch_heads(model, clean, corrupt(clean), metric, cells_per_forward=-1)
    with pytest.raises(InputError, match="same shape"):
        patch_heads(model, clean, clean[:, :4], metric)
    result = patch_heads_positions(model, clean, corrupt(clean), metric)
    with pytest.raises(InputError, match="plot one head"):
        result.plot()


def test_forwards_start_at_the_first_patched_block():
    """Cells in block 1 only: block 0 runs for the clean and corrupted baselines, never in the patched runs."""
    model = make_model()
    clean = inputs_for(model, batch=2, pos=6)
    calls = []
    with model.hooks({"blocks.0.resid_pre": lambda x, hook: calls.append(x.shape[0])}):
        patch_heads_positions(model, clean, corrupt(clean), logit_diff_metric(3, 7), what="z")  # cells in blocks 0 and 1
        n_both = len(calls)
        calls.clear()
        patch_cells(model, clean, corrupt(clean), logit_diff_metric(3, 7), [("blocks.1.attn.z", (p, 0)) for p in range(6)])
    assert calls == [2, 2] and n_both > 2  # the two baselines only
