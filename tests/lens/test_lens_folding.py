"""Folding leaves log-probabilities unchanged on every architecture, moves the gains where it says,
never touches the original, and refuses folds that would change the model."""

import copy

import pytest
import torch
from lens_models import ARCHS, inputs_for, make_model

from glassformer.errors import InputError
from glassformer.lens import fold_weights


def log_probs(model, inputs):
    if isinstance(inputs, dict):
        return model(inputs["tokens"], src=inputs["src"]).log_softmax(-1)
    return model(inputs).log_softmax(-1)


@pytest.mark.parametrize("overrides", ARCHS + [pytest.param({"arch": "encoder", "embed_norm": True, "unembed_transform": True},
                                                            id="bert-head-pre-norm")])
def test_folding_keeps_log_probs(overrides):
    model = make_model(**overrides)
    original = copy.deepcopy(model.state_dict())
    inputs = inputs_for(model)
    center = model.config.norm == "layernorm"
    folded = fold_weights(model, center_writing_weights=center, center_unembed=True)
    torch.testing.assert_close(log_probs(folded, inputs), log_probs(model, inputs), atol=2e-5, rtol=2e-5)
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())  # the original is untouched
    if model.config.norm != "none":
        for name, p in folded.named_parameters():
            if name.endswith((".w",)) and "q_norm" not in name and "k_norm" not in name and "ln_embed" not in name:
                assert torch.equal(p, torch.ones_like(p)), name
    assert folded.folding == {"fold_norms": True, "center_writing_weights": center, "center_unembed": True}


def test_what_folding_does_to_the_weights():
    model = make_model()
    folded = fold_weights(model)
    w, b = model.blocks[0].ln1.w.detach(), model.blocks[0].ln1.b.detach()
    W_Q = model.blocks[0].attn.W_Q.detach()
    torch.testing.assert_close(folded.blocks[0].attn.W_Q.detach(), W_Q * w[None, :, None])
    torch.testing.assert_close(folded.blocks[0].attn.b_Q.detach(), model.blocks[0].attn.b_Q.detach() + torch.einsum("d,hde->he", b, W_Q))
    for writer in (folded.embed.W_E, folded.pos_embed.W_pos, folded.blocks[1].attn.W_O, folded.blocks[1].mlp.W_out):
        assert writer.mean(-1).abs().max() < 1e-6  # centred over d_model
    assert folded.unembed.W_U.mean(-1).abs().max() > 1e-3  # center_unembed is off by default


def test_a_classifier_head_keeps_its_outputs():
    model = make_model(arch="encoder", n_classes=3)
    tokens = inputs_for(model)
    torch.testing.assert_close(fold_weights(model).classify(tokens), model.classify(tokens), atol=2e-5, rtol=2e-5)


def test_folds_that_would_change_the_model_are_refused():
    with pytest.raises(InputError, match="pre-norm"):
        fold_weights(make_model(norm_position="post"))
    with pytest.raises(InputError, match="LayerNorm"):
        fold_weights(make_model(norm="rmsnorm"))  # rmsnorm keeps the mean: writers cannot be centred
    folded = fold_weights(make_model(norm="rmsnorm"), center_writing_weights=False)
    assert torch.equal(folded.ln_final.w, torch.ones(32))
