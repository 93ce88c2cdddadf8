"""The pieces that read trained (soft) heads and numerical outputs, on data where the answer is known:
fractions of values, cuts, the linear arg-max and the decision tree, and that each prints as code that
computes what the object computes."""

import numpy as np

from glassformer.rasp import language as L
from glassformer.rasp.decompile import fit as F
from glassformer.rasp.decompile import numeric, soft


def _cells(n_rows: int, n_cells: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    q, k = rng.integers(0, n_rows, n_cells), rng.integers(0, n_rows, n_cells)
    return F.Cells(q, k, np.ones(n_cells, bool), np.arange(n_rows) % 2 == 0), rng


def _printed(fn):
    """The callable that ``fn``'s printed source builds (its table, where it has one, defined first)."""
    scope: dict = {}
    if hasattr(fn, "definition"):
        exec(fn.definition(), scope)
    return eval(fn.source, scope)


def test_fit_dist_recovers_a_head_that_writes_the_value_histogram():
    cells, rng = _cells(200, 4000)
    codes = rng.integers(0, 4, 200)  # a feature with 4 values at every row
    sel = rng.random(4000) < 0.5
    V = rng.normal(size=(4, 16))  # each value writes its own direction
    counts = np.zeros((200, 4))
    np.add.at(counts, (cells.q[sel], codes[cells.k[sel]]), 1)
    frac = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    act = frac @ V  # [rows, d] an even-attention head
    vals, got, r2 = soft.fit_dist(sel, cells, codes, act, 200, np.ones(200, bool))
    assert vals == [0, 1, 2, 3] and np.allclose(got, frac) and r2 > 0.999
    # a head writing one direction only is a mean of marks, not a histogram
    assert soft.fit_dist(sel, cells, codes, frac @ np.outer([0, 1, 2, 3], V[0]), 200, np.ones(200, bool)) is None


def test_fit_threshold_finds_the_cut_the_head_counts():
    cells, rng = _cells(300, 6000, seed=1)
    order = np.array([0.1, 0.25, 0.4, 0.55, 0.7, 0.85])  # the registry's numbers
    codes = rng.integers(0, 6, 300)
    sel = np.ones(6000, bool)
    above = np.bincount(cells.q, weights=order[codes[cells.k]] > 0.5, minlength=300)
    count = np.bincount(cells.q, minlength=300)
    act = (above / np.maximum(count, 1))[:, None] * np.ones((1, 8))  # the fraction of keys past 0.5

    def r2(groups):
        return F.grouped_r2(act, groups, cells.train)

    score, cut = soft.fit_threshold(sel, cells, codes, order, 300, r2)
    assert cut == 0.475  # halfway between 0.4 and 0.55 (the score is held-out R^2 of fine fraction groups)
    mark = soft.Threshold(cut)
    assert [mark(x) for x in (0.4, 0.55)] == [0, 1] and [_printed(mark)(x) for x in (0.4, 0.55)] == [0, 1]


def test_linear_argmax_reads_the_most_frequent_value_and_prints_the_same_function():
    rng = np.random.default_rng(2)
    X = rng.dirichlet(np.ones(4), size=600)  # [rows, 4] fractions
    target = ["abcd"[i] for i in X.argmax(1)]
    train = np.arange(600) % 2 == 0
    weights, acc = numeric.fit_linear(X, target, train)
    assert acc >= 0.97
    fn = numeric.LinearArgmax("T_out", weights)
    printed = _printed(fn)
    assert all(fn(tuple(x)) == printed(tuple(x)) for x in X[:50])
    # two inputs: a tuple and a number, flattened the same way by the object and its source
    fn2 = numeric.LinearArgmax("T_out", {c: (w[0][:3] + [w[0][3]], w[1]) for c, w in weights.items()}, arity=2)
    assert all(fn2(tuple(x[:3]), x[3]) == _printed(fn2)(tuple(x[:3]), x[3]) == fn(tuple(x)) for x in X[:50])


def test_tree_reads_an_and_of_two_cuts():
    rng = np.random.default_rng(3)
    X = rng.random((800, 2))
    target = ["1" if a <= 0.5 and b > 0.3 else "0" for a, b in X]  # balanced: no bad prefix, depth 0
    root, acc = numeric.fit_tree(X, target, np.arange(800) % 2 == 0)
    assert acc >= 0.97
    fn = numeric.Tree("t", root, arity=2)
    assert all(fn(a, b) == _printed(fn)(a, b) for a, b in X[:100])
    assert numeric.fit_tree(X, ["0"] * 800, np.ones(800, bool)) is None  # one class: nothing to read


def test_only_quantities_feed_numerical_readings():
    hist = L.SelectorWidth(L.Select(L.tokens, L.tokens, L.EQ))
    labels = L.Map(lambda x: {"a": 0, "b": 1}.get(x, 2), L.tokens)  # an MLP's output numbers: labels
    mean = L.numerical(L.Aggregate(L.Select(L.indices, L.indices, L.LEQ), L.numerical(L.Map(lambda x: 1, L.tokens))))
    assert soft.is_numerical(hist) and soft.is_numerical(L.indices) and soft.is_numerical(mean)
    assert not soft.is_numerical(labels) and not soft.is_numerical(L.tokens)
