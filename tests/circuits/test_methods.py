"""The methods, on models whose circuit is known: exact patching is perfect on compiled nodes; the
metrics are the textbook ones."""

import numpy as np
import pytest

from glassformer import rasp
from glassformer.circuits.merge import merge
from glassformer.circuits.methods import Context, Scores, run_method
from glassformer.circuits.programs import random_program
from glassformer.circuits.scoring import auroc, score_model
from glassformer.circuits.truth import ground_truth
from glassformer.circuits.errors import CircuitsError


def test_auroc_matches_counting_pairs():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 4, size=12).astype(float)  # many ties
        labels = rng.random(12) < 0.4
        if labels.all() or not labels.any():
            continue
        pos, neg = scores[labels], scores[~labels]
        want = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
        assert auroc(scores, labels) == pytest.approx(want)
    assert np.isnan(auroc(np.ones(3), np.ones(3, dtype=bool)))


def test_claimed_circuit_is_above_one_percent_of_the_best():
    s = Scores("nodes", ["a", "b", "c"], np.array([10.0, 0.05, 0.2]))
    assert s.circuit() == {"a", "c"}
    assert Scores("nodes", ["a"], np.array([0.0])).circuit() == set()


@pytest.fixture(scope="module")
def sort_with_distractor():
    compiled = merge(rasp.compile(rasp.library.sort(), vocab="abcd", max_len=5), random_program(3, "abcd", 5)[1])
    compiled.model.requires_grad_(False)
    return compiled, ground_truth(compiled)


def test_activation_patching_finds_exactly_the_compiled_nodes(sort_with_distractor):
    compiled, truth = sort_with_distractor
    rows = {r["method"]: r for r in score_model({"id": "sort"}, compiled, truth, ["activation_patching_nodes",
                                                                                  "direct_logit_attribution"])}
    ap = rows["activation_patching_nodes"]
    assert ap["precision"] == 1.0 and ap["recall"] == 1.0 and ap["auroc"] == 1.0
    dla = rows["direct_logit_attribution"]  # only the final copy head writes the output's dimensions
    assert dla["claimed"] == 1 and dla["precision"] == 1.0 and dla["recall"] < 1.0


def test_edge_methods_claim_only_true_edges(sort_with_distractor):
    compiled, truth = sort_with_distractor
    ctx = Context(compiled, n_pairs=8)
    for name in ("activation_patching_edges", "acdc", "eap", "eap_ig"):
        s = run_method(name, ctx)
        assert len(s.scores) == len(ctx.graph.edges)
        claimed = s.circuit()
        assert claimed and claimed <= set(truth.edges), name
    # ACDC and path patching see every edge that carries an input-dependent value
    varying = set(truth.edges) - set(truth.constant_edges)
    assert varying <= run_method("acdc", ctx).circuit()


def test_eap_is_the_first_order_term_of_patching():
    """On a model with a linear path (a head's value read by the unembedding), EAP's score of the final
    edge equals path patching's: the metric is linear in the logits' input."""
    compiled = rasp.compile(rasp.library.shift_by(), vocab="abc", max_len=5)
    compiled.model.requires_grad_(False)
    ctx = Context(compiled, n_pairs=8)
    edges = ctx.graph.edges
    a = dict(zip(edges, run_method("eap", ctx).scores))
    b = dict(zip(edges, run_method("activation_patching_edges", ctx).scores))
    assert a[("a0.0", "logits")] == pytest.approx(b[("a0.0", "logits")], rel=1e-4)


def test_unknown_method_is_an_error(sort_with_distractor):
    with pytest.raises(CircuitsError, match="no circuit method"):
        run_method("telepathy", Context(sort_with_distractor[0], n_pairs=2))


def test_the_decompiler_claims_the_heads_and_mlps_its_program_reads(sort_with_distractor):
    """On sort beside a distractor program, the decompiled program's steps name exactly the true nodes; the
    claimed nodes rank above every other (score 1 + ablation effect)."""
    compiled, truth = sort_with_distractor
    row = score_model({"id": "sort"}, compiled, truth, ["decompiler"])[0]
    assert row["level"] == "nodes" and row["claimed"] == len(truth.nodes)
    assert row["precision"] == 1.0 and row["recall"] == 1.0 and row["auroc"] == 1.0
    assert row["note"].startswith("match 1.000")


def test_a_decompiler_refusal_claims_nothing_and_says_why(monkeypatch):
    """A model the decompiler cannot read is a result (nothing claimed), with the reason in the row."""
    from glassformer import rasp as rasp_module
    from glassformer.rasp.errors import RaspProgramError

    def refuse(*args, **kwargs):
        raise RaspProgramError("no head reads as a selector")

    monkeypatch.setattr(rasp_module, "decompile", refuse)
    compiled = rasp.compile(rasp.library.length(), vocab="abc", max_len=4)
    scores = run_method("decompiler", Context(compiled, n_pairs=4))
    assert scores.circuit() == set() and not scores.scores.any()
    assert scores.note == "decompile refused: no head reads as a selector"
