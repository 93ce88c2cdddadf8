"""CircuitGraph: its forward pass is the model's, and patching does what its equation says."""

import numpy as np
import pytest
import torch

from glassformer import ModelConfig, Transformer, rasp
from glassformer.circuits.errors import CircuitsError
from glassformer.circuits.graph import CircuitGraph
from glassformer.circuits.inputs import sample_tokens


@pytest.fixture(scope="module")
def sort_model():
    return rasp.compile(rasp.library.sort(), vocab="abcd", max_len=5)


def test_forward_matches_the_model_with_padding(sort_model):
    tokens, mask = sample_tokens(sort_model, 40, np.random.default_rng(0))
    g = CircuitGraph(sort_model.model)
    with torch.no_grad():
        ours = g.forward(tokens, attention_mask=mask).logits
        theirs = sort_model.model(tokens, attention_mask=mask)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_forward_matches_a_random_causal_decoder():
    config = ModelConfig(arch="decoder", d_model=16, n_layers=2, n_heads=2, d_vocab=7, n_ctx=8, norm="none")
    model = Transformer(config).eval()
    tokens = torch.randint(0, 7, (3, 8))
    with torch.no_grad():
        assert torch.allclose(CircuitGraph(model).forward(tokens).logits, model(tokens), atol=1e-5)


def test_patching_the_embedding_everywhere_gives_the_corrupt_run(sort_model):
    g = CircuitGraph(sort_model.model)
    tokens, mask = sample_tokens(sort_model, 100, np.random.default_rng(1))
    full = mask.all(1)
    clean, corrupt = tokens[full][:4], tokens[full][4:8]
    with torch.no_grad():
        bad = g.forward(corrupt)
        node = g.forward(clean, corrupt=bad.senders, rows=torch.tensor([g.node_row("embed")] * 4))
        every_edge = g.forward(clean, corrupt=bad.senders, patch=g.allowed()[None, 0:1].float()
                               * torch.ones(1, len(g.senders), 1))
    assert torch.allclose(node.logits, bad.logits, atol=1e-6)
    assert torch.allclose(every_edge.logits, bad.logits, atol=1e-6)


def test_one_edge_patch_equals_the_dense_patch(sort_model):
    g = CircuitGraph(sort_model.model)
    tokens, _ = sample_tokens(sort_model, 100, np.random.default_rng(2))
    full = tokens[(tokens != 1).all(1)]
    clean, corrupt = full[:3], full[3:6]
    s, r = "a2.0", "logits"
    with torch.no_grad():
        bad = g.forward(corrupt)
        sparse = g.forward(clean, corrupt=bad.senders, rows=torch.tensor([g.edge_row(s, r)] * 3))
        P = torch.zeros(1, len(g.senders), len(g.receivers))
        P[0, g.s_index[s], g.r_index[r]] = 1
        dense = g.forward(clean, corrupt=bad.senders, patch=P)
    assert torch.allclose(sparse.logits, dense.logits, atol=1e-6)
    assert not torch.allclose(sparse.logits, g.forward(clean).logits)  # the edge matters for sort


def test_edges_only_point_forward(sort_model):
    g = CircuitGraph(sort_model.model)
    order = {s: i for i, s in enumerate(g.senders)}
    for s, r in g.edges:
        owner = g.receiver_of(r)
        assert owner == "logits" or order[s] < order[owner]
    assert ("a0.0", "a0.1.q") not in g.edges and ("a0.0", "m0") in g.edges


def test_a_model_with_norms_is_refused():
    model = Transformer(ModelConfig(arch="decoder", d_model=16, n_layers=1, n_heads=2, d_vocab=5, n_ctx=8))
    with pytest.raises(CircuitsError, match="norm='none'"):
        CircuitGraph(model)
