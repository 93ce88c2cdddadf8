"""Step 3 of the decompiler: the output SOp, read from the features the program has so far.

The model's prediction at each scored position is read as the best of
* a lookup table over one to three features (``Map`` / ``SequenceMap``; exact where the features are
  categorical and the sample shows every combination);
* a linear arg-max over one or two numerical features (``numeric.LinearArgmax``: the unembedding's own
  form, which answers for value combinations the sample never showed);
* a small decision tree over them (``numeric.Tree``: thresholds, as an MLP reading a count or a fraction
  draws them),
by accuracy on the inputs held out from the fit (ties: the simpler form, then the features nearest the
unembedding).
"""

from __future__ import annotations

import itertools

import numpy as np

from glassformer.rasp import language as L
from glassformer.rasp.decompile import fit as F
from glassformer.rasp.decompile import numeric, soft
from glassformer.rasp.decompile.program import Pack, Table, table_or_affine


def read_output(state: State) -> Step:
    """The output SOp: a table from 1-3 features to the model's prediction at the scored positions, or a
    linear arg-max over one or two numerical features (``numeric.LinearArgmax``) where that predicts better."""
    from glassformer.rasp.decompile.core import Step

    scored = np.concatenate([np.array(ex.scored, bool) for ex in state.examples])
    rows = np.flatnonzero(scored)
    target = [state.outputs[state.row_ex[r]][state.row_pos[r]] for r in rows]
    train = state.cells.train[rows]
    reg = state.registry
    feats = state.features
    values = {id(f): [reg.values[c] if c >= 0 else None for c in f.codes[rows]] for f in feats}
    best = None

    def consider(combo, kind="table"):
        nonlocal best
        if kind == "table":
            acc = F.fit_table(target, [values[id(f)] for f in combo], train)[2]
        else:
            X = numeric.numeric_matrix([values[id(f)] for f in combo])
            fit = numeric.fit_linear if kind == "linear" else numeric.fit_tree
            fitted = fit(X, target, train) if X is not None else None
            if fitted is None:
                return
            acc = fitted[1] - 0.002  # a table where it predicts as well
        acc -= 0.001 * (len(combo) - 1)
        closeness = max(f.layer for f in combo)  # on a tie, read the features nearest the unembedding
        if best is None or (round(acc, 4), closeness) > (round(best[0], 4), best[3]):
            best = (acc, combo, kind, closeness)

    for size in (1, 2):
        for combo in itertools.combinations(feats, size):
            consider(combo)
    if best[0] < 0.999:  # a third feature, added to the best pair (greedy forward selection)
        pair = best[1]
        for f in feats:
            if all(f is not p for p in pair) and len(pair) == 2:
                consider(pair + (f,))
    if best[0] < 0.999:  # a linear read-out of numerical features (tuples of fractions, means, counts)
        quantities = [f for f in feats if soft.is_numerical(f.expr) and f.n_values() > 2
                   and numeric.numeric_matrix([values[id(f)]]) is not None]
        for size in (1, 2):
            for combo in itertools.combinations(quantities, size):
                consider(combo, "linear")
                consider(combo, "tree")
    acc, combo, kind, _ = best
    name = state.table_name("out")
    where = f"({', '.join(f.name for f in combo)})"
    if kind in ("linear", "tree"):  # refit on every row for the final weights / splits
        X = numeric.numeric_matrix([values[id(f)] for f in combo])
        fit, model, what = ((numeric.fit_linear, numeric.LinearArgmax, "linear arg-max") if kind == "linear" else
                            (numeric.fit_tree, numeric.Tree, "decision tree"))
        params, _ = fit(X, target, np.ones(len(rows), bool))
        fn = model(name, params, len(combo))
        expr = L.Map(fn, combo[0].expr, name="output") if len(combo) == 1 else \
            L.SequenceMap(fn, combo[0].expr, combo[1].expr, name="output")
        comps = [f.component for f in combo if f.component is not None]
        return Step(expr, comps, "output", round(acc, 4), f"{what} over {where}")
    # refit on every row for the final table
    table, default, _ = F.fit_table(target, [values[id(f)] for f in combo], np.ones(len(rows), bool))
    raw = table
    if len(combo) == 1:
        expr = L.Map(table_or_affine(name, raw, default), combo[0].expr, name="output")
    elif len(combo) == 2:
        expr = L.SequenceMap(Table(name, raw, default, 2), combo[0].expr, combo[1].expr, name="output")
    else:
        pack = L.SequenceMap(Pack(), combo[0].expr, combo[1].expr, name="packed")
        raw3 = {((k[0], k[1]), k[2]): v for k, v in raw.items()}
        expr = L.SequenceMap(Table(name, raw3, default, 2), pack, combo[2].expr, name="output")
    comps = [f.component for f in combo if f.component is not None]
    return Step(expr, comps, "output", round(acc, 4), f"table over {where}")
