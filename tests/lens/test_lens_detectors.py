"""pattern_score on patterns whose scores are known by hand; references built from tokens; detect_heads
finds heads whose pattern is forced to be a previous-token or induction pattern."""

import math

import pytest
import torch
from lens_models import inputs_for, make_model

from glassformer.errors import InputError
from glassformer.lens import (
    detect_heads,
    duplicate_token_reference,
    first_token_reference,
    induction_reference,
    pattern_score,
    previous_token_reference,
    repeated_random_tokens,
)


def causal_uniform(n: int) -> torch.Tensor:
    return torch.ones(n, n).tril() / torch.arange(1, n + 1)[:, None]  # row q spreads over keys 0..q


def test_a_perfect_previous_token_head_scores_one_and_a_uniform_head_by_hand():
    n = 6
    perfect = torch.zeros(n, n)
    perfect[0, 0] = 1
    perfect[torch.arange(1, n), torch.arange(0, n - 1)] = 1
    ref = previous_token_reference(n)
    assert pattern_score(perfect, ref).item() == pytest.approx(1.0)
    assert pattern_score(perfect, ref, method="tv").item() == pytest.approx(1.0)
    expected = sum(1 / (q + 1) for q in range(1, n)) / (n - 1)  # queries 1..n-1, mass 1/(q+1) on key q-1
    assert pattern_score(causal_uniform(n), ref).item() == pytest.approx(expected)
    # tv: 1 - 1/2 (|1/(q+1) - 1| + q * 1/(q+1)) = 1/(q+1) as well for a one-key reference
    assert pattern_score(causal_uniform(n), ref, method="tv").item() == pytest.approx(expected)


def test_mass_and_tv_differ_on_a_multi_key_reference():
    ref = torch.tensor([[1.0, 1.0, 0.0]])  # the query should spread over keys 0 and 1
    on_one_key = torch.tensor([[1.0, 0.0, 0.0]])
    assert pattern_score(on_one_key, ref).item() == pytest.approx(1.0)  # all attention on allowed keys
    assert pattern_score(on_one_key, ref, method="tv").item() == pytest.approx(0.5)  # but not spread as the reference


def test_shapes_broadcast_and_empty_rows_are_skipped():
    patterns = torch.rand(2, 3, 5, 5).softmax(-1)  # [layers, heads, q, k]
    ref = previous_token_reference(5)
    assert pattern_score(patterns, ref).shape == (2, 3)
    per_batch = torch.rand(4, 1, 5, 5) > 0.5  # [batch, 1, q, k] references broadcast over heads
    assert pattern_score(torch.rand(4, 3, 5, 5).softmax(-1), per_batch).shape == (4, 3)
    assert math.isnan(pattern_score(torch.eye(3), torch.zeros(3, 3)).item())  # nothing to score
    masked = pattern_score(torch.eye(4), torch.eye(4), query_mask=torch.tensor([True, False, False, False]))
    assert masked.item() == pytest.approx(1.0)
    with pytest.raises(InputError, match="reference"):
        pattern_score(torch.eye(4), torch.eye(3))
    with pytest.raises(InputError, match="method"):
        pattern_score(torch.eye(4), torch.eye(4), method="cosine")
    with pytest.raises(InputError, match="non-negative"):
        pattern_score(torch.eye(2), -torch.eye(2))


def test_references_from_tokens():
    tokens = torch.tensor([5, 7, 5, 9, 7])
    dup = duplicate_token_reference(tokens)[0]
    assert dup.nonzero().tolist() == [[2, 0], [4, 1]]  # the second 5 sees the first, the second 7 the first
    ind = induction_reference(tokens)[0]
    assert ind.nonzero().tolist() == [[2, 1], [4, 2]]  # the earlier 5 was followed by position 1, the earlier 7 by 2
    assert first_token_reference(3).nonzero().tolist() == [[1, 0], [2, 0]]
    assert previous_token_reference(3).nonzero().tolist() == [[1, 0], [2, 1]]


def test_repeated_random_tokens_repeat_distinct_tokens():
    tokens = repeated_random_tokens(10, 6, batch=4, first=0, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (4, 13) and (tokens[:, 0] == 0).all()
    assert torch.equal(tokens[:, 1:7], tokens[:, 7:])
    assert all(len(set(row[1:7].tolist())) == 6 for row in tokens)


def forced(kind: str):
    """A hook that replaces a layer's attention pattern by a previous-token or induction pattern."""

    def hook(pattern, _point):
        batch, heads, q, k = pattern.shape
        out = torch.zeros_like(pattern)
        for b in range(batch):
            for i in range(q):
                j = max(i - 1, 0) if kind == "previous" else (i - q // 2 + 1 if i >= q // 2 else 0)
                out[b, :, i, j] = 1
        return out

    return hook


def test_detect_heads_finds_forced_previous_token_and_induction_heads():
    model = make_model()
    tokens = repeated_random_tokens(20, 5, batch=2, generator=torch.Generator().manual_seed(0))  # [2, 10]
    with model.hooks({"blocks.0.attn.pattern": forced("previous"), "blocks.1.attn.pattern": forced("induction")}):
        scores = detect_heads(model, tokens)
    assert set(scores) == {"previous_token", "first_token", "duplicate_token", "induction"}
    assert torch.allclose(scores["previous_token"][0], torch.ones(4))
    assert torch.allclose(scores["induction"][1], torch.ones(4))
    assert (scores["induction"][0] < 0.5).all() and (scores["previous_token"][1] < 0.5).all()


def test_detect_heads_on_every_architecture():
    for overrides in ({}, {"arch": "encoder"}, {"arch": "encoder-decoder"}, {"norm": "none", "attn_only": True}):
        model = make_model(**overrides)
        scores = detect_heads(model, inputs_for(model))
        assert scores["previous_token"].shape == (2, 4)
        assert ((scores["previous_token"] >= 0) & (scores["previous_token"] <= 1)).all()
    model = make_model(arch="encoder-decoder")
    assert detect_heads(model, inputs_for(model), stack="encoder")["first_token"].shape == (2, 4)
