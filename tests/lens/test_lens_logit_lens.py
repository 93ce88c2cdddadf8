"""The logit lens ends at the model's own prediction; the tuned lens starts as the logit lens and, trained
with the project's Trainer, moves intermediate layers closer to the final distribution."""

import pytest
import torch
from lens_models import ARCHS, inputs_for, make_model

from glassformer.errors import InputError
from glassformer.lens import TunedLens, logit_lens, repeated_random_tokens, train_tuned_lens
from glassformer.lens.toys import RepeatedSegments, train_induction_model


@pytest.mark.parametrize("overrides", ARCHS + [pytest.param({"arch": "encoder", "unembed_transform": True,
                                                            "embed_norm": True, "norm_position": "post"}, id="bert-like")])
def test_the_last_row_is_the_models_prediction(overrides):
    model = make_model(**overrides)
    inputs = inputs_for(model)
    lens = logit_lens(model, inputs, incl_mid=True)
    args = (inputs["tokens"],) if isinstance(inputs, dict) else (inputs,)
    kwargs = {"src": inputs["src"]} if isinstance(inputs, dict) else {}
    torch.testing.assert_close(lens.log_probs[-1], model(*args, **kwargs).log_softmax(-1), atol=1e-5, rtol=1e-5)
    assert lens.labels[0] == "0_pre" and lens.labels[-1] == "final" and len(lens.labels) == lens.log_probs.shape[0]
    kl = lens.kl_to_final()
    assert (kl > -1e-5).all() and kl[-1].abs().max() < 1e-5


def test_top_k_prob_of_and_rank_agree():
    model = make_model()
    tokens = inputs_for(model)
    lens = logit_lens(model, tokens)
    probs, ids = lens.top_k(3)
    assert probs.shape == ids.shape == (3, 3, 10, 3)
    torch.testing.assert_close(lens.prob_of(ids[..., 0][0]), lens.probs.gather(-1, ids[0][None, ..., :1].expand(3, -1, -1, 1))[..., 0])
    assert (lens.rank_of(ids[-1, ..., 0])[-1] == 0).all()  # the final layer's top token has rank 0 there
    assert torch.allclose(lens.prob_of(7), lens.probs[..., 7])
    with pytest.raises(InputError, match="k must be"):
        lens.top_k(0)
    with pytest.raises(InputError, match="token"):
        lens.prob_of(torch.zeros(5, dtype=torch.long))


def test_an_untrained_tuned_lens_is_the_logit_lens():
    model = make_model()
    tokens = inputs_for(model)
    torch.testing.assert_close(logit_lens(model, tokens, tuned=TunedLens(model)).log_probs, logit_lens(model, tokens).log_probs)
    with pytest.raises(InputError, match="incl_mid"):
        logit_lens(model, tokens, tuned=TunedLens(model), incl_mid=True)


def test_a_trained_tuned_lens_is_closer_to_the_final_prediction(seed, record_property):
    model, _ = train_induction_model(steps=1000, seed=seed, d_model=32, n_heads=2, n_ctx=24, max_len=8, lr=3e-3)  # shared with the experiments
    before = {n: p.clone() for n, p in model.named_parameters()}
    lens = train_tuned_lens(model, RepeatedSegments(n_ctx=24, max_len=8), steps=150, batch_size=16, lr=3e-3, seed=seed)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # the model stays frozen
    tokens = repeated_random_tokens(32, 8, 32, generator=torch.Generator().manual_seed(5))
    plain_kl = logit_lens(model, tokens).kl_to_final().mean((1, 2))  # [layers]
    tuned_kl = logit_lens(model, tokens, tuned=lens).kl_to_final().mean((1, 2))
    record_property("kl_ratio", (tuned_kl[:2] / plain_kl[:2]).tolist())
    # Entering layer 1 the stream does not yet hold the induction answer (layer 1 computes it), so no affine
    # map can reach the final prediction; the tuned lens still gets strictly closer at both block inputs.
    # measured over seeds 0-4 (1 thread): tuned / plain KL 0.71-0.80 at the first input, 0.48-0.86 at the second
    assert (tuned_kl[:2] < 0.95 * plain_kl[:2]).all()
    assert tuned_kl[-1] == pytest.approx(0.0, abs=1e-5)
    assert len(lens.losses) == 150 and lens.losses[-1] < lens.losses[0]
