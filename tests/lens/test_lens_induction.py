"""Induction scores over several repeat lengths tell an induction head from a head that looks a fixed distance back."""

import torch

from glassformer import ModelConfig, Transformer
from glassformer.lens import detect_heads, induction_probe, induction_scores, repeated_random_tokens


def _model_with_fixed_offset_head(offset: int) -> Transformer:
    """A 1-layer attention-only decoder whose head 0 attends exactly ``offset`` positions back (by a huge
    ALiBi-free score from learned positions: W_Q, W_K read one-hot positions)."""
    n_ctx = 16
    model = Transformer(ModelConfig(d_model=n_ctx + 8, n_layers=1, n_heads=1, d_head=n_ctx, d_vocab=16, n_ctx=n_ctx,
                                    attn_only=True, positional="learned", final_norm=False, norm="none"))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.pos_embed.W_pos[:, :n_ctx] = torch.eye(n_ctx)  # position p -> dimension p
        attn = model.blocks[0].attn
        attn.W_Q[0] = torch.eye(model.config.d_model)[:, :n_ctx] * 50  # query p reads dimension p
        shift = torch.zeros(model.config.d_model, n_ctx)
        for p in range(n_ctx - offset):
            shift[p, p + offset] = 50.0  # key p answers the query at p + offset
        attn.W_K[0] = shift
    return model


def test_probe_rows_repeat_each_length_at_its_own_offset():
    tokens, n = induction_probe(16, (3, 5, 8), rows_per_length=4, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (12, 16) and n.tolist() == [3] * 4 + [5] * 4 + [8] * 4
    for row, k in zip(tokens, n.tolist()):
        assert torch.equal(row[16 - k :], row[16 - 2 * k : 16 - k]) and len(set(row[: 16 - k].tolist())) == 16 - k


def test_a_fixed_offset_head_scores_as_induction_on_one_length_but_not_over_several():
    model = _model_with_fixed_offset_head(offset=4)  # the induction key of a repeat of 5 is 4 back
    one_length = repeated_random_tokens(16, 5, 16, generator=torch.Generator().manual_seed(1))  # [16, 10]
    assert float(detect_heads(model, one_length)["induction"][0, 0]) > 0.9  # fooled on one repeat length
    result = induction_scores(model, lengths=(3, 4, 5, 6, 7, 8))
    by_length = dict(zip(result.lengths, result.per_length[:, 0, 0].tolist()))
    assert by_length[5] > 0.9 and max(v for k, v in by_length.items() if k != 5) < 0.2
    assert float(result.scores[0, 0]) < 0.35  # not called an induction head
