"""Direct logit attribution splits the model's actual logit (difference) exactly over the components."""

import pytest
import torch
from lens_models import ARCHS, inputs_for, make_model

from glassformer.errors import InputError
from glassformer.lens import direct_logit_attribution, run_with_cache


@pytest.mark.parametrize("overrides", ARCHS)
def test_contributions_sum_to_the_logit_difference(overrides):
    model = make_model(**overrides)
    logits, cache = run_with_cache(model, inputs_for(model))
    answer, wrong = torch.tensor([3, 5, 7]), torch.tensor([1, 1, 2])
    attribution = direct_logit_attribution(model, cache, answer, wrong, pos=-2)
    expected = logits[torch.arange(3), -2, answer] - logits[torch.arange(3), -2, wrong]
    torch.testing.assert_close(attribution.total, expected)
    torch.testing.assert_close(attribution.values.sum(0), expected, atol=1e-4, rtol=1e-4)
    assert len(attribution.labels) == attribution.values.shape[0]


def test_a_single_logit_and_one_component_by_hand():
    model = make_model()
    tokens = inputs_for(model)
    logits, cache = run_with_cache(model, tokens)
    attribution = direct_logit_attribution(model, tokens, 4, pos=3, heads=False)  # inputs instead of a cache
    torch.testing.assert_close(attribution.values.sum(0), logits[:, 3, 4], atol=1e-4, rtol=1e-4)
    # the MLP of block 1 by hand: centre, divide by the cached scale, multiply by the gain, read with W_U[:, 4]
    x = cache["blocks.1.mlp_out"][:, 3]
    by_hand = ((x - x.mean(-1, keepdim=True)) / cache["ln_final.scale"][:, 3] * model.ln_final.w) @ model.unembed.W_U[:, 4]
    torch.testing.assert_close(attribution.values[attribution.labels.index("L1_mlp")], by_hand.detach())
    assert attribution.labels[-1] == "unembed bias"
    assert attribution.top(1)[0][0] in attribution.labels


def test_models_whose_logits_are_not_linear_in_the_stream_are_refused():
    bert_like = make_model(arch="encoder", unembed_transform=True)
    with pytest.raises(InputError, match="unembed_transform"):
        direct_logit_attribution(bert_like, inputs_for(bert_like), 1)
    model = make_model()
    with pytest.raises(InputError, match="answer"):
        direct_logit_attribution(model, inputs_for(model), torch.tensor([1, 2]))  # 2 ids for a batch of 3
    with pytest.raises(InputError, match="pos"):
        direct_logit_attribution(model, inputs_for(model), 1, pos=99)
