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
    assert folded.folding == {"fold_norms": True, "center_writing_weights": center, "center_unembed": True,
                              "fold_value_biases": False, "center_reading_weights": False}


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


@pytest.mark.parametrize("overrides", [
    pytest.param({}, id="decoder"),
    pytest.param({"arch": "encoder-decoder"}, id="encoder-decoder"),
    pytest.param({"act": "swiglu", "n_kv_heads": 2, "qk_norm": True}, id="gated-gqa-qknorm"),
    pytest.param({"arch": "encoder", "embed_norm": True, "unembed_transform": True}, id="bert-head-pre-norm"),
    pytest.param({"attention": "sliding", "window": 3, "positional": "alibi"}, id="sliding-alibi"),
])
def test_value_biases_and_reading_weights_fold_with_exact_logits(overrides):
    model = make_model(**overrides)
    inputs = inputs_for(model)
    logits = _logits(model, inputs)
    folded = fold_weights(model, fold_value_biases=True, center_reading_weights=True)
    torch.testing.assert_close(_logits(folded, inputs), logits, atol=3e-5, rtol=3e-5)  # logits, not just log-probs
    for block in folded.blocks:
        assert block.attn.b_V.abs().max() == 0
        for W in (block.attn.W_Q, block.attn.W_K, block.attn.W_V):
            assert W.mean(1).abs().max() < 1e-6  # mean-zero over the d_model axis it reads
        assert block.mlp.W_in.mean(0).abs().max() < 1e-6
    assert folded.unembed.W_U.mean(0).abs().max() < 1e-6
    assert folded.folding["fold_value_biases"] and folded.folding["center_reading_weights"]
    only_values = fold_weights(model, fold_norms=False, center_writing_weights=False, fold_value_biases=True)
    torch.testing.assert_close(_logits(only_values, inputs), logits, atol=3e-5, rtol=3e-5)


def test_new_folds_that_would_change_the_model_are_refused():
    with pytest.raises(InputError, match="center_reading_weights needs fold_norms"):
        fold_weights(make_model(), fold_norms=False, center_writing_weights=False, center_reading_weights=True)
    with pytest.raises(InputError, match="center_reading_weights needs"):
        fold_weights(make_model(norm="rmsnorm"), center_writing_weights=False, center_reading_weights=True)
    with pytest.raises(InputError, match="sum to one"):
        fold_weights(make_model(attention="linear"), fold_value_biases=True)


def _logits(model, inputs):
    with torch.no_grad():
        if isinstance(inputs, dict):
            return model(inputs["tokens"], src=inputs["src"])
        return model(inputs)
