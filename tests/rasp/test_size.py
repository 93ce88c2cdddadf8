"""Compiled models are sized layer by layer (no empty heads, no unused hidden units), can reuse residual
dimensions after their last reader (exactly), and report their dense size next to the floors."""

import itertools

import pytest
import torch

from glassformer import rasp
from glassformer.rasp import library
from glassformer.rasp.compiler.compiled import CompiledModel
from glassformer.rasp.compiler.size import dense_params, live_dimensions, size_report


def compiled(name: str, n: int, **options):
    entry = library.PROGRAMS[name]
    return rasp.compile(entry.build(), vocab=entry.vocab, max_len=n, **options), entry


@pytest.mark.parametrize("name", ["sort", "dyck2", "long_addition"])
def test_each_layer_has_exactly_the_heads_and_units_it_uses(name):
    c, _ = compiled(name, 6)
    for layer, block in enumerate(c.model.blocks):
        heads = [b for b in c.blocks if b.kind == "attention" and b.layer == layer]
        units = sum(b.size for b in c.blocks if b.kind == "mlp" and b.layer == layer)
        assert block.attn.n_heads == max(1, len(heads))
        assert block.attn.d_head == max([1] + [b.size for b in heads])  # the widest head of the layer
        assert block.mlp.W_in.shape[1] == max(1, units)
        for h in range(len(heads)):  # no empty head
            assert block.attn.W_O[h].abs().sum() > 0 and block.attn.W_Q[h].abs().sum() + block.attn.b_Q[h].abs().sum() > 0
        if units:  # no unused hidden unit: each reads something or has a bias, and writes something
            assert ((block.mlp.W_in.abs().sum(0) + block.mlp.b_in.abs()) > 0).all()
            assert (block.mlp.W_out.abs().sum(1) > 0).all()
    assert len({b.attn.n_heads for b in c.model.blocks}) > 1 and c.model.config.per_layer


def test_the_size_report_counts_the_model_and_orders_its_floors():
    c, _ = compiled("dyck2", 8)
    r = size_report(c)
    assert r["params"] == c.model.num_params() and r["nonzero"] == sum(int((p != 0).sum()) for p in c.model.parameters())
    assert r["uniform"] > r["params"] >= r["per_head"] >= r["floor"] and r["params"] > r["reuse"] >= r["floor"]
    assert 1 < r["live_d_model"] < r["d_model"] == c.model.config.d_model
    # by hand: one layer, d = 3, two heads of widths 1 and 2, 4 hidden units, vocab 5, n_ctx 6, 2 outputs
    assert dense_params(3, 5, 6, 2, [([1, 2], 4)]) == 5 * 3 + 6 * 3 + (4 * 3 * 3 + 3 * 3 + 3) + (2 * 3 * 4 + 4 + 3) + 3 * 2 + 2


@pytest.mark.parametrize("name,n", [("dyck2", 5), ("sort", 5), ("long_addition", 4), ("most_frequent", 5)])
def test_reusing_residual_dimensions_stays_exact_and_is_narrower(name, n):
    """d_model 87 -> 59 for dyck2 at N = 5 (live floor 43), sort 33 -> 29, long_addition (N = 4) 102 -> 84, most_frequent
    33 -> 25. Every input up to length n (at most ~3,000 of them) agrees
    with the interpreter (and with the model without reuse)."""
    plain, entry = compiled(name, n)
    reused, _ = compiled(name, n, reuse_residual=True)
    assert reused.model.config.d_model < plain.model.config.d_model
    assert reused.model.config.d_model >= live_dimensions(plain)
    assert any(" → " in label for label in reused.residual_labels)  # a dimension with two owners
    inputs = [list(x) for k in range(1, n + 1) for x in itertools.product(entry.vocab, repeat=k)]
    if len(inputs) > 3000:
        inputs = inputs[:: len(inputs) // 3000 + 1]
    wants = []
    for xs in inputs:
        try:
            wants.append(rasp.evaluate(reused.program, xs))
        except rasp.RaspEvaluationError:
            wants.append("rejected")
    got, base = reused.run_batch(inputs), plain.run_batch(inputs)
    assert all(w == "rejected" or g == w for g, w in zip(got, wants))
    assert got == base  # where the interpreter rejects an input too
    erasers = [b for b in reused.blocks if b.detail.startswith("erase its dimensions")]
    assert erasers and all(b.units[1] - b.units[0] == b.size for b in erasers)


def test_a_reused_model_saves_and_loads_with_its_labels(tmp_path):
    reused, _ = compiled("dyck2", 5, reuse_residual=True)
    for sparse in (False, True):
        loaded = CompiledModel.load(reused.save(tmp_path / str(sparse), sparse=sparse))
        assert loaded.residual_labels == reused.residual_labels and loaded.run("({})") == reused.run("({})")
        for a, b in zip(reused.model.parameters(), loaded.model.parameters()):
            assert torch.equal(a, b)


def test_reuse_is_skipped_where_erasing_would_cost_more_than_it_saves():
    """Tracr's sort_freq frees 5 of ~100 dimensions but would need ~190 erasing units: at N = 32 reuse made it
    17x -> 25x dense / non-zero before this check. Reused or not, the model is never larger."""
    from glassformer.rasp import tracr_lib

    program = tracr_lib.make_sort_freq(max_seq_len=8)
    plain = rasp.compile(program, (1, 2, 3, 4), 8)
    reused = rasp.compile(program, (1, 2, 3, 4), 8, reuse_residual=True)
    assert reused.model.num_params() == plain.model.num_params() and reused.residual_labels == plain.residual_labels
    for name in ("dyck2", "sort", "reverse", "histogram"):
        a, _ = compiled(name, 8)
        b, _ = compiled(name, 8, reuse_residual=True)
        assert b.model.num_params() <= a.model.num_params()
