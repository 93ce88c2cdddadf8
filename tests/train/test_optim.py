import math

import pytest
import torch

from glassformer import ConfigError, ModelConfig, Transformer
from glassformer.train.optim import lr_at, make_optimizer, param_groups


def small_model(**overrides):
    torch.manual_seed(0)
    return Transformer(ModelConfig(d_model=16, n_layers=2, n_heads=2, d_vocab=10, n_ctx=8, **overrides))


def group_names(groups):
    return {g["name"]: set(g["names"]) for g in groups}


def test_only_matrices_decay_not_norms_biases_or_embeddings():
    model = small_model()
    names = group_names(param_groups(model, weight_decay=0.1))
    decayed, not_decayed = names["decay"], names["no_decay"]
    assert decayed | not_decayed == {n for n, _ in model.named_parameters()}
    assert not decayed & not_decayed
    leaves = lambda names: {n.rsplit(".", 1)[-1] for n in names}
    assert leaves(decayed) == {"W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_U"}
    assert {"W_E", "W_pos", "b_Q", "b_O", "b_in", "b_U", "w", "b"} <= leaves(not_decayed)
    assert all(leaf.startswith(("b", "w", "W_E", "W_pos")) for leaf in leaves(not_decayed))


def test_decay_embeddings_on_request_and_tied_weights_once():
    names = group_names(param_groups(small_model(), 0.1, decay_embeddings=True))
    assert {"embed.W_E", "pos_embed.W_pos"} <= names["decay"]
    tied = small_model(tie_embeddings=True)
    groups = param_groups(tied, 0.1)
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == len(list(tied.parameters()))


def test_adamw_shrinks_decayed_weights_only():
    """With zero gradients Adam's update is 0, so only decoupled weight decay moves parameters:
    theta <- theta * (1 - lr * weight_decay) for decayed ones, unchanged for the rest."""
    model = small_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(model, lr=0.1, weight_decay=0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        factor = 1 - 0.1 * 0.5 if n in group_names(opt.param_groups)["decay"] else 1.0
        torch.testing.assert_close(p.detach(), before[n] * factor, rtol=0, atol=1e-7)


def test_schedule_warmup_then_cosine():
    kw = dict(lr=1.0, min_lr=0.1, warmup_steps=10, total_steps=110)
    assert [lr_at(s, **kw) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)  # start of the decay: the peak
    assert lr_at(60, **kw) == pytest.approx(0.55)  # half way: (lr + min_lr) / 2
    assert lr_at(35, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    after = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert lr_at(110, **kw) == lr_at(500, **kw) == pytest.approx(0.1)
    assert lr_at(0, lr=1.0, min_lr=0.0, warmup_steps=0, total_steps=5) == pytest.approx(1.0)


def test_bad_hyperparameters_are_named():
    with pytest.raises(ConfigError, match="weight_decay"):
        make_optimizer(small_model(), lr=1e-3, weight_decay=-1)
    with pytest.raises(ConfigError, match="lr"):
        make_optimizer(small_model(), lr=0.0)
