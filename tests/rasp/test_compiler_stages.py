"""Each compiler stage on its own: graph lowering, value sets, fusion, MLP and head constructions,
layer allocation, residual layout, sharpness."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glassformer import rasp
from glassformer.rasp import (
    EQ, GT, LEQ, LT, NE, TRUE, Aggregate, Full, Map, Select, SelectorWidth, SequenceMap, indices, library, numerical,
    tokens,
)
from glassformer.rasp.compiler import mlp as M
from glassformer.rasp.compiler.allocate import allocate
from glassformer.rasp.compiler.assign import assign
from glassformer.rasp.compiler.attention import build_head
from glassformer.rasp.compiler.graph import Attend, ElementWise, Embedded, build_graph, evaluate_graph
from glassformer.rasp.compiler.layout import build_layout
from glassformer.rasp.compiler.values import ValueSet, infer_values, mean_values
from glassformer.rasp.errors import RaspEvaluationError

from rasp_inputs import inputs_for


def plan_for(program, vocab, max_len):
    graph = build_graph(program, max_len)
    values = infer_values(graph, list(vocab), max_len)
    return assign(graph, values, list(vocab), max_len)


# -- stage 1: graph -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(library.PROGRAMS))
def test_lowered_graph_computes_what_the_interpreter_does(name):
    entry = library.PROGRAMS[name]
    program = entry.build()
    graph = build_graph(program, 6)
    for xs in inputs_for(name, entry.vocab, 6, count=40)[:80]:
        try:
            want = rasp.evaluate(program, xs)
        except RaspEvaluationError:
            continue
        assert evaluate_graph(graph, xs)[graph.output.label] == want


def test_length_and_selector_width_lower_to_a_width_head_and_a_decoder():
    graph = build_graph(library.reverse(), 8)
    raw, length = graph.node("1/(length+1)"), graph.node("length")
    assert isinstance(raw.op, Attend) and raw.op.mode == "width" and raw.op.selector.constant is True
    assert isinstance(length.op, ElementWise) and length.op.args == (raw,)
    assert raw.values_hint == tuple(sorted(1 / (n + 1) for n in range(1, 9)))  # all-selecting: n >= 1


def test_selectors_become_conjunctions_of_clauses():
    a, b = Select(indices, indices, LT), Select(tokens, tokens, EQ)
    graph = build_graph(SelectorWidth(a & b & Select(indices, indices, NE)), 5)
    head = next(n for n in graph.nodes if isinstance(n.op, Attend))
    assert len(head.op.selector.clauses) == 2  # the two (indices, indices) comparisons merged
    graph = build_graph(SelectorWidth(a | b), 5)  # an "or" over two pairs: packed tuples
    head = next(n for n in graph.nodes if isinstance(n.op, Attend))
    (clause,) = head.op.selector.clauses
    assert clause.keys.label.endswith("_keys") and clause.queries.label.endswith("_queries")
    graph = build_graph(SelectorWidth(~Select(tokens, tokens, TRUE) | a), 5)
    assert len(next(n for n in graph.nodes if isinstance(n.op, Attend)).op.selector.clauses) == 1


@given(st.lists(st.sampled_from([EQ, NE, LT, LEQ, GT]), min_size=2, max_size=3),
       st.lists(st.sampled_from(["and", "or", "not"]), min_size=2, max_size=3),
       st.lists(st.sampled_from("ab"), min_size=1, max_size=5))
@settings(max_examples=40, deadline=None)
def test_selector_normal_form_keeps_the_matrix(preds, ops, xs):
    sops = [indices, tokens, numerical(Map(lambda t: 1 if t == "a" else 0, tokens))]
    sel = Select(sops[0], sops[0], preds[0])
    for i, (p, op) in enumerate(zip(preds[1:], ops)):
        leaf = Select(sops[(i + 1) % 3], sops[(i + 1) % 3], p)
        sel = ~sel if op == "not" else (sel & leaf if op == "and" else sel | leaf)
    program = SelectorWidth(sel)
    graph = build_graph(program, 5)
    assert evaluate_graph(graph, xs)[graph.output.label] == rasp.evaluate(program, xs)


def test_numerical_keys_get_a_categorical_copy_and_constants_fold():
    x = numerical(Map(lambda t: 1 if t == "a" else 0, tokens, name="x"))
    graph = build_graph(SelectorWidth(Select(x, x, EQ)), 4)
    assert any(n.label == "x_cat" and not n.is_numerical for n in graph.nodes)
    folded = build_graph(SequenceMap(lambda a, b: a + b, Map(lambda c: c * 2, Full(3)), indices, name="s"), 4)
    assert not any(isinstance(n.op, Embedded) and n.op.kind == "constant" for n in folded.nodes)
    assert folded.output.op.args == (folded.node("indices"),)  # Map(Full(3)) folded to 6, then partially applied
    assert evaluate_graph(folded, "abc")["s"] == [6, 7, 8]


# -- stage 2: value sets --------------------------------------------------------------------------

def test_mean_values_equal_brute_force():
    values = (-1, 0, 2, 5)
    got = mean_values(ValueSet.of(values, True), 4, default=0)
    want = {0}
    for w in range(1, 5):
        for combo in itertools.combinations_with_replacement(values, w):
            want.add(math.fsum(combo) / w)
    assert set(got.values) == want
    thirds = mean_values(ValueSet.of([0, 1], True), 3, default=0)
    assert 1 / 3 in thirds.values and 2 / 3 in thirds.values and len(thirds.values) == 5  # 0, 1/3, 1/2, 2/3, 1


def test_value_sets_of_the_library():
    graph = build_graph(library.reverse(), 6)
    values = infer_values(graph, list("abc"), 6)
    assert values["length"].values == tuple(range(1, 7))
    assert values["opp_idx"].values == tuple(range(-5, 6))  # n - 1 - i, n in 1..6, i in 0..5
    assert values["reverse"].values == (None, "a", "b", "c")  # an aggregate may select nothing
    shifted = library.shift_by(1, default="z")
    graph = build_graph(shifted, 4)
    assert infer_values(graph, list("ab"), 4)[graph.output.label].values == ("a", "b", "z")


def test_combinations_on_which_a_function_raises_give_no_value():
    """Where the interpreter raises (10 // 0), the MLP writes no value: None joins the set."""
    program = Map(lambda i: 10 // i, indices, name="inv")
    graph = build_graph(program, 4)
    assert infer_values(graph, list("a"), 4)["inv"].values == (None, 3, 5, 10)


# -- stage 3: assignment --------------------------------------------------------------------------

def test_fusion_and_folding_decisions():
    plan = plan_for(library.reverse(), "abc", 8)
    assert plan.mlps["opp_idx"].fused == ("length",) and "length" in plan.inlined
    assert set(plan.heads) == {"1/(length+1)", "reverse"}
    plan = plan_for(library.frac_prevs(), "xy", 8)
    assert not plan.mlps  # the Map is folded into the head's value matrix
    assert plan.heads["frac_prevs"].value.node.label == "tokens"
    plan = plan_for(library.nary_sequence_map(lambda a, b, c: a + b + c, tokens, indices, tokens), (0, 1), 4)
    (task,) = plan.mlps.values()
    assert [i.label for i in task.inputs] == ["tokens", "indices"] and task.strategy == "table"


def test_two_numerical_inputs_get_a_categorical_copy_unless_additive():
    x = numerical(Aggregate(Select(indices, indices, LEQ), numerical(Map(lambda t: t == "a", tokens)), name="x"))
    y = numerical(Aggregate(Select(indices, indices, TRUE), numerical(Map(lambda t: t == "b", tokens)), name="y"))
    plan = plan_for(numerical(SequenceMap(lambda a, b: a * b, x, y, name="prod")), "ab", 4)
    assert plan.mlps["prod"].strategy == "lookup" and ({"x_cat", "y_cat"} & set(plan.mlps))
    plan = plan_for(numerical(SequenceMap(lambda a, b: 2 * a - b, x, y, name="lin")), "ab", 4)
    assert plan.mlps["lin"].strategy == "additive"


# -- MLP constructions ----------------------------------------------------------------------------

@given(st.sets(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 2)), max_size=30))
@settings(max_examples=60, deadline=None)
def test_rectangles_are_a_disjoint_cover(points):
    rects = M.best_rectangles(points, 3)
    covered = [p for r in rects for p in itertools.product(*r)]
    assert sorted(covered) == sorted(points)  # every point exactly once


def _node(label, encoding="categorical"):
    from glassformer.rasp.compiler.graph import Node
    return Node(label, encoding, Embedded("tokens"))


def _run(spec, x):
    return {k: round(v, 6) for k, v in spec.forward(x).items() if abs(v) > 1e-9}


def test_table_mlp_is_exact_on_every_combination():
    a, b, out = _node("a"), _node("b"), _node("out")
    fn = lambda x, y: (x + y) % 3 if x != y else None  # noqa: E731
    for noisy in (set(), {"a"}):
        spec = M.MLPSpec("out")
        M.table(spec, out, [a, b], [ValueSet.of(range(3)), ValueSet.of(range(3))], fn, noisy)
        for x, y in itertools.product(range(3), range(3)):
            want = M.encode(out, fn(x, y))
            assert _run(spec, {("a", x): 1.0, ("b", y): 1.0}) == want
            if noisy:  # a one-hot off by e = 0.05 < margin / k: only the right unit fires, off by <= e / (1 - margin)
                assert spec.tolerance["a"] == M.MARGIN / 2 and spec.passthrough["a"] == 1 / (1 - M.MARGIN)
                got = spec.forward({("a", x): 0.96, ("a", (x + 1) % 3): 0.01, ("b", y): 1.0})
                assert set(k for k, v in got.items() if v) == set(want)
                assert all(abs(got[k] - 1.0) <= 0.05 / (1 - M.MARGIN) for k in want)
        assert _run(spec, {("b", 1): 1.0}) == {}  # a None input: nothing written


def test_lookup_mlp_with_gate_is_exact_within_tolerance():
    s, c, out = _node("s", "numerical"), _node("c"), _node("out", "numerical")
    S = ValueSet.of([1 / (w + 1) for w in range(9)], True)
    fn = lambda v, combo: round(1 / v - 1) * (2 if combo[0] == "x" else -1)  # noqa: E731
    spec = M.MLPSpec("out")
    M.lookup(spec, out, s, S, [c], [ValueSet.of("xy")], fn, set())
    tol = spec.tolerance["s"]
    assert 0 < tol < 1
    for v in S.values:
        for g in "xy":
            for push in (0.0, tol * 0.99 * v, -tol * 0.99 * v):  # width inputs: relative tolerance
                got = spec.forward({("s",): v + push, ("c", g): 1.0})
                assert abs(got.get(("out",), 0.0) - fn(v, (g,))) < 1e-9
    assert spec.forward({("s",): 0.0, M.BOS: 1.0}).get(("out",), 0.0) == 0.0  # silent at BOS


def test_additive_mlp_and_float_self_check():
    x, y, out = _node("x", "numerical"), _node("y", "numerical"), _node("out", "numerical")
    sets = [ValueSet.of([0, 0.5, 1], True), ValueSet.of([-2, 3], True)]
    fn = lambda a, b: a * a - 3 * b  # noqa: E731
    spec = M.MLPSpec("out")
    M.additive(spec, out, [x, y], sets, [lambda a: a * a, lambda b: -3 * b + 6], -6.0, set(), {})
    for a, b in itertools.product(*(s.values for s in sets)):
        assert abs(spec.forward({("x",): a, ("y",): b})[("out",)] - fn(a, b)) < 1e-9
    M.check_exact(spec, out, [x, y], sets, fn, np.random.default_rng(0))
    broken = M.MLPSpec("out")
    M.additive(broken, out, [x, y], sets, [lambda a: a, lambda b: -3 * b + 6], -6.0, set(), {})
    with pytest.raises(rasp.RaspCompileError, match="internal check failed"):
        M.check_exact(broken, out, [x, y], sets, fn, np.random.default_rng(0))


# -- heads ----------------------------------------------------------------------------------------

def _score(spec, x_q: dict, x_k: dict) -> float:
    """sum over head dimensions of (x_q W_Q + b_Q)(x_k W_K + b_K), before beta."""
    total = 0.0
    for wq, bq, wk, bk in spec.qk:
        q = sum(w * x_q.get(key, 0.0) for key, w in wq.items()) + bq
        k = sum(w * x_k.get(key, 0.0) for key, w in wk.items()) + bk
        total += q * k
    return total


def test_head_scores_reproduce_the_selector():
    pred = lambda k, q: (k + q) % 3 == 0 or k > q  # noqa: E731
    program = Aggregate(Select(indices, indices, pred) & Select(tokens, tokens, EQ), tokens, name="agg")
    plan = plan_for(program, "ab", 5)
    spec = build_head(plan.heads["agg"], plan.values)
    L = spec.n_clauses
    assert L == 2
    for q, k, tq, tk in itertools.product(range(5), range(5), "ab", "ab"):
        x_q = {("indices", q): 1.0, ("tokens", tq): 1.0}
        x_k = {("indices", k): 1.0, ("tokens", tk): 1.0}
        score = _score(spec, x_q, x_k)
        if pred(k, q) and tq == tk:
            assert score == pytest.approx(L)
        else:
            assert score <= L - 1 + 1e-9
        assert _score(spec, x_q, {M.BOS: 1.0}) == pytest.approx(L - 0.5)  # BOS: half a step below
    assert _score(spec, {M.BOS: 1.0}, {M.BOS: 1.0}) > 2 * L  # the BOS query keeps to itself


# -- allocation, layout, sharpness ----------------------------------------------------------------

def test_allocation_uses_the_fewest_layers():
    assert allocate(plan_for(library.reverse(), "abc", 8)).n_layers == 2  # the paper's hand count
    assert allocate(plan_for(library.histogram(), "abc", 8)).n_layers == 1
    assert allocate(plan_for(library.frac_prevs(), "xy", 8)).n_layers == 1
    alloc = allocate(plan_for(library.dyck2(), "(){}", 8))
    for layer in range(alloc.n_layers):
        assert alloc.heads[layer] or alloc.mlps[layer]  # never a layer spent on nothing


def test_layout_labels_every_dimension():
    layout = build_layout(plan_for(library.reverse(), "abc", 4))
    assert layout.labels[0] == "bos"
    assert {"tokens=a", "indices=3", "opp_idx=0", "reverse=c", "1/(length+1)"} <= set(layout.labels)
    assert not any(l.startswith("length=") for l in layout.labels)  # fused away: no dimensions
    assert len(set(layout.labels)) == len(layout.labels)
    frac = build_layout(plan_for(library.frac_prevs(), "xy", 4))
    assert "frac_prevs" in frac.labels and not any(l.startswith("is_x") for l in frac.labels)


def test_sharpness_grows_with_length():
    betas = [rasp.compile(library.frac_prevs(), "xy", n).blocks[0].detail for n in (4, 16, 64)]
    values = [float(d.split("beta=")[1]) for d in betas]
    assert values[0] < values[1] < values[2]
