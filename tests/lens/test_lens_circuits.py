"""FactoredMatrix agrees with the multiplied-out matrix; circuits and composition scores match their
definitions computed the slow way."""

import pytest
import torch
from lens_models import make_model

from glassformer.errors import InputError
from glassformer.lens import (
    FactoredMatrix,
    composition_scores,
    copying_score,
    full_ov_circuit,
    ov_circuit,
    ov_svd,
    qk_circuit,
)


def test_factored_matrix_matches_its_product():
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(3, 10, 4, generator=g), torch.randn(3, 4, 8, generator=g)
    m = FactoredMatrix(A, B)
    AB = A @ B
    assert m.shape == (3, 10, 8)
    torch.testing.assert_close(m.AB, AB)
    torch.testing.assert_close(m.T.AB, AB.transpose(-1, -2))
    U, S, V = m.svd()
    torch.testing.assert_close(U @ torch.diag_embed(S) @ V.transpose(-1, -2), AB, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(S, torch.linalg.svdvals(AB)[:, :4], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(m.norm(), torch.linalg.matrix_norm(AB), atol=1e-4, rtol=1e-4)
    C = torch.randn(8, 5, generator=g)
    torch.testing.assert_close((m @ C).AB, AB @ C, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close((torch.randn(2, 10, generator=g) @ m).shape, torch.Size([3, 2, 8]))
    torch.testing.assert_close(m[1].AB, AB[1])
    square = FactoredMatrix(torch.randn(6, 2, generator=g), torch.randn(2, 6, generator=g))
    eig = torch.linalg.eigvals(square.AB)
    top = eig[eig.abs().argsort(descending=True)[:2]]
    assert torch.allclose(torch.sort(square.eigenvalues().real).values, torch.sort(top.real).values, atol=1e-4)
    with pytest.raises(InputError):
        FactoredMatrix(torch.randn(3, 4), torch.randn(5, 3))


def test_qk_and_ov_circuits_follow_their_definitions_with_grouped_query_heads():
    model = make_model(n_kv_heads=2)
    attn = model.blocks[1].attn
    qk, ov = qk_circuit(model, 1), ov_circuit(model, 1)
    assert qk.shape == ov.shape == (4, 32, 32)
    torch.testing.assert_close(qk[3].AB, attn.W_Q[3] @ attn.W_K[1].T)  # query head 3 uses kv head 3 // 2 = 1
    torch.testing.assert_close(ov[2].AB, attn.W_V[1] @ attn.W_O[2])
    full = full_ov_circuit(model, 1)
    torch.testing.assert_close(full[0].AB, model.embed.W_E @ attn.W_V[0] @ attn.W_O[0] @ model.unembed.W_U, atol=1e-4, rtol=1e-4)


def test_composition_scores_match_the_formula_on_materialised_matrices():
    model = make_model()
    a0, a1 = model.blocks[0].attn, model.blocks[1].attn
    ov1 = (a0.W_V[2] @ a0.W_O[2]).detach()
    qk2 = (a1.W_Q[1] @ a1.W_K[1].T).detach()
    ov2 = (a1.W_V[1] @ a1.W_O[1]).detach()
    norm = torch.linalg.matrix_norm
    expected = {
        "q": norm(ov1 @ qk2) / (norm(ov1) * norm(qk2)),
        "k": norm(qk2 @ ov1.T) / (norm(ov1) * norm(qk2)),
        "v": norm(ov1 @ ov2) / (norm(ov1) * norm(ov2)),
    }
    for kind, value in expected.items():
        scores = composition_scores(model, kind)
        assert scores.shape == (2, 4, 2, 4)
        assert scores[0, 2, 1, 1].item() == pytest.approx(value.item(), rel=1e-4)
        assert torch.isnan(scores[1, :, 0]).all() and torch.isnan(scores[0, :, 0]).all()  # only earlier -> later
    with pytest.raises(InputError, match="kind"):
        composition_scores(model, "x")


def test_a_pure_copying_head_is_found_by_the_ov_views():
    model = make_model(d_vocab=20, d_model=32, tie_embeddings=False)
    attn = model.blocks[1].attn
    with torch.no_grad():
        model.embed.W_E.copy_(torch.eye(20, 32))  # token t is the basis vector e_t
        model.unembed.W_U.copy_(torch.eye(32, 20))  # and is read back from e_t
        attn.W_V[0].copy_(torch.eye(32, 8))  # head 0 copies the first 8 dimensions ...
        attn.W_O[0].copy_(torch.eye(8, 32))
    scores = copying_score(model, 1)
    assert scores[0].item() == pytest.approx(8 / 20)  # ... so it copies exactly tokens 0..7
    directions = ov_svd(model, 1, 0, k=2, top=1)
    assert directions[0].singular_value == pytest.approx(1.0)
    assert directions[0].input_tokens == directions[0].output_tokens  # each direction maps a token to itself
