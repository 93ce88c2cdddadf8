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


def test_a_vision_model_attributes_its_class_logits_read_at_the_class_token():
    """A ViT's logits are class logits LN(resid[:, 0]) W_cls + b_cls: DLA splits those at position 0 (by hand for
    one head), patching scores them, and a position that has no logit is refused by name."""
    from glassformer import ModelConfig, Transformer
    from glassformer.lens import logit_diff_metric, patch_layers_positions

    torch.manual_seed(0)
    model = Transformer(ModelConfig(arch="encoder", input="patches", image_size=8, patch_size=4, n_classes=5,
                                    n_ctx=5, d_model=16, n_heads=2, n_layers=2)).eval()
    images, other = torch.rand(3, 8, 8), torch.rand(3, 8, 8)
    logits, cache = run_with_cache(model, images)  # [batch, n_classes]
    result = direct_logit_attribution(model, cache, 1, torch.tensor([0, 2, 3]))
    torch.testing.assert_close(result.total, logits[:, 1] - logits[torch.arange(3), torch.tensor([0, 2, 3])])
    torch.testing.assert_close(result.values.sum(0), result.total, atol=1e-5, rtol=0)
    z = cache["blocks.1.attn.z"][:, 0, 0]  # [batch, d_head]: head L1H0 at the class token
    direction = model.classifier.W[:, 1] - model.classifier.W[:, [0, 2, 3]].T  # [batch, d_model]
    by_hand = (cache.apply_ln_final(z @ model.blocks[1].attn.W_O[0], pos=0) * direction).sum(-1)  # [batch]
    torch.testing.assert_close(result.values[result.labels.index("L1H0")], by_hand.detach(), atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="class token .position 0.: pos=3"):
        direct_logit_attribution(model, cache, 1, pos=3)
    patched = patch_layers_positions(model, images, other, logit_diff_metric(1, 2), normalize=False)
    assert patched.values.shape == (2, 5)  # [layers, class token + 4 patches]
    clean_resid = cache["blocks.1.resid_pre"]  # [batch, 5, d_model]

    def put_clean_class_token(x, hook):
        x = x.clone()
        x[:, 0] = clean_resid[:, 0]
        return x

    with torch.no_grad(), model.hooks({"blocks.1.resid_pre": put_clean_class_token}):
        by_hand = model(other)  # [batch, n_classes]: the cell (layer 1, position 0) patched by hand
    assert float(patched.values[1, 0]) == pytest.approx(float((by_hand[:, 1] - by_hand[:, 2]).mean()), abs=1e-5)
    with torch.no_grad():
        clean = model(images)
    assert logit_diff_metric(1, 2)(clean) == pytest.approx(float((clean[:, 1] - clean[:, 2]).mean()))
    with pytest.raises(InputError, match="class logits .* no position"):
        logit_diff_metric(1, 2, pos=-1)(clean)
