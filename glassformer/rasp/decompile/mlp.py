"""Reading a kept MLP as lookup tables (``Map`` / ``SequenceMap``) over the features the program has.

An MLP may compute several maps side by side: a compiled layer packs every map of that layer into one
MLP, each writing its own residual dimensions.  So the MLP's output (what it adds to the residual
stream, ``[rows, d_model]``) is split by output dimension:

1. For every feature f and every pair (f, g), the dimensions j it explains **exactly**: held-out
   ``R^2_j >= 0.99`` of ``out[:, j]`` predicted by its mean per value of f (per value pair of (f, g)).
   A pair is credited only with the dimensions neither of its features explains alone (its interaction).
2. Greedily, the candidate explaining the most variance among the dimensions not yet taken becomes one
   table, over those dimensions; until no candidate explains 1% of the output's variance.
3. What is left (all of it when no dimension is explained exactly: a trained MLP usually spreads each map
   over every dimension) is read as before, as the one table over one or two features of best held-out
   R^2 -- if it explains at least 2% of that rest.

Each table's values are the MLP's distinct outputs on its dimensions (clusters of its output vectors),
numbered 0, 1, ... -- or, for two integer inputs, named ``a * x + b * y`` where such a sum tells
them apart exactly (``program.linear_relabel``: then it also answers for pairs never seen, such as the
counts of longer inputs); a table that gives every input value its own output is the input re-encoded (the
first such is kept as ``Map(lambda x: x, f)``, later ones add nothing).
"""

from __future__ import annotations

import itertools

import numpy as np

from glassformer.rasp import language as L
from glassformer.rasp.decompile import core
from glassformer.rasp.decompile import fit as F
from glassformer.rasp.decompile.program import Table, linear_relabel, table_or_affine

EXACT = 0.99  # held-out R^2 of one output dimension that counts as explained exactly
MIN_SHARE = 0.01  # a table must explain this share of the output's variance


def read_mlp(state, comp, arrays: dict[str, np.ndarray]) -> list:
    """The steps (module docstring) that one kept MLP ``comp`` computes."""
    _, layer, _ = comp
    feats = core._available(state, layer + 0.75)
    out = arrays["out"].astype(np.float64)
    var = out.var(0)  # [d_model]
    live = var > 1e-9 * max(float(var.max()), 1e-30)  # dimensions the MLP writes at all
    act, var = out[:, live], var[live]
    train = state.cells.train
    total = float(var.sum())
    steps: list = []
    if total <= 0:
        return steps
    exact = _exact_dims(act, feats, train)
    n_keys = {c: int(F.combine([feats[i].codes for i in c]).max()) + 1 for c in exact}
    taken = np.zeros(act.shape[1], bool)
    while exact:
        share = {combo: float(var[dims & ~taken].sum()) / total for combo, dims in exact.items()}
        # the most variance; on a tie, the smaller table (fewer input combinations: a table over a
        # 3-valued sign generalizes, one over the fractions it was read from meets unseen ones)
        combo = max(share, key=lambda c: (round(share[c] - 0.001 * (len(c) - 1), 4), -len(c), -n_keys[c]))
        if share[combo] < MIN_SHARE:
            break
        dims = exact.pop(combo) & ~taken
        # and the rare dimensions held-out R^2 cannot judge (a count of 13 seen a few times) that the
        # same table fits exactly on every row
        dims |= (fitted_r2(act, F.combine([feats[i].codes for i in combo])) >= 0.999) & ~taken
        taken |= dims
        part = np.where(dims[None, :], act, 0.0)
        rows = np.ones(state.n_rows, bool)
        step = _table(state, comp, tuple(feats[i] for i in combo), part, rows, share[combo], len(steps), exact=True)
        steps += [step] if step is not None else []
    rest = np.where(taken[None, :], 0.0, act)
    if float(var[~taken].sum()) > 0.05 * total:
        best = _best_r2(state, feats, rest, train)
        if best is not None and (best[0] >= 0.02 or not steps):
            r2, combo, rows = best
            step = _table(state, comp, combo, rest, rows, r2, len(steps))
            steps += [step] if step is not None else []
    return steps


def _exact_dims(act: np.ndarray, feats: list, train: np.ndarray) -> dict[tuple, np.ndarray]:
    """``{(i,) or (i, j): [dims] bool}`` over feature indices: the dimensions each candidate explains
    exactly (pairs: only those neither feature explains alone)."""
    singles = {i: dim_r2(act, f.codes, train) >= EXACT for i, f in enumerate(feats) if f.n_values() <= 512}
    out = {(i,): d for i, d in singles.items() if d.any()}
    for i, j in itertools.combinations(list(singles), 2):
        groups = F.combine([feats[i].codes, feats[j].codes])
        if groups.max() >= 512:  # a table of more than 512 rows reads nothing
            continue
        dims = (dim_r2(act, groups, train) >= EXACT) & ~singles[i] & ~singles[j]
        if dims.any():
            out[(i, j)] = dims
    return out


def dim_r2(act: np.ndarray, groups: np.ndarray, train: np.ndarray) -> np.ndarray:
    """``[d]``: held-out R^2 of each column of ``act`` [rows, d] predicted by its mean per group (fitted
    on the ``train`` rows; a group never seen there predicts the overall mean)."""
    uniq, inv = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(uniq), act.shape[1]))
    np.add.at(sums, inv[train], act[train]) if len(uniq) > 4096 else _add_rows(sums, inv[train], act[train])
    counts = np.bincount(inv[train], minlength=len(uniq))
    overall = act[train].mean(0)
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], overall)
    test = ~train
    resid = ((act[test] - means[inv[test]]) ** 2).sum(0)
    spread = ((act[test] - act[test].mean(0)) ** 2).sum(0)
    return np.where(spread > 1e-12, 1 - resid / np.maximum(spread, 1e-30), 1.0)


def fitted_r2(act: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``[d]``: in-sample R^2 of each column of ``act`` predicted by its mean per group (every row)."""
    resid = ((act - _group_means(act, groups)) ** 2).sum(0)
    spread = ((act - act.mean(0)) ** 2).sum(0)
    return np.where(spread > 1e-12, 1 - resid / np.maximum(spread, 1e-30), 1.0)


def _group_means(act: np.ndarray, groups: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(uniq), act.shape[1]))
    _add_rows(sums, inv, act)
    return (sums / np.bincount(inv)[:, None])[inv]


def _add_rows(sums: np.ndarray, inv: np.ndarray, rows: np.ndarray) -> None:
    """``sums[inv[i]] += rows[i]`` as one matrix product (a one-hot of the groups), faster than add.at."""
    onehot = np.zeros((len(inv), sums.shape[0]))
    onehot[np.arange(len(inv)), inv] = 1.0
    sums += onehot.T @ rows


def _best_r2(state, feats: list, act: np.ndarray, train: np.ndarray):
    """``(R^2, combo, rows)``: the one or two features whose groups best explain ``act`` (held out)."""
    scored = state.scored
    row_sets = [np.ones(state.n_rows, bool)] + ([scored] if not scored.all() else [])
    best = None
    for rows in row_sets:  # every position, and (for a task) only the positions the task scores
        for size in (1, 2):
            for combo in itertools.combinations(feats, size):
                groups = F.combine([f.codes for f in combo])
                if groups.max() >= 512:  # a table of more than 512 rows reads nothing
                    continue
                r2 = F.grouped_r2(act[rows], groups[rows], train[rows]) - 0.02 * (size - 1)
                if best is None or r2 > best[0] + 1e-9:
                    best = (r2, combo, rows)
    return best


def row_clusters(act: np.ndarray, groups: np.ndarray, rel_tol: float = 0.1) -> dict[int, int]:
    """Group id -> output value 0, 1, ...: the distinct outputs, found among the group means from the
    largest group down (a mean within ``rel_tol`` of the spread of the means joins a value), then each
    group given the value most of its rows lie nearest to -- so a rare group whose rows the program
    reads imperfectly (a mixture of two outputs) still takes a value, not a value of its own."""
    uniq, inv = np.unique(groups, return_inverse=True)
    counts = np.bincount(inv)
    sums = np.zeros((len(uniq), act.shape[1]))
    _add_rows(sums, inv, act)
    means = sums / counts[:, None]
    spread = np.sqrt(((means - means.mean(0)) ** 2).sum(1).mean()) if len(uniq) > 1 else 1.0
    tol = rel_tol * max(spread, 1e-9)
    centers: list[np.ndarray] = []
    for g in np.argsort(-counts, kind="stable"):
        if not centers or min(np.linalg.norm(means[g] - c) for c in centers) > tol:
            centers.append(means[g])
    C = np.stack(centers)  # [values, d]
    d2 = (act ** 2).sum(1)[:, None] - 2 * act @ C.T + (C ** 2).sum(1)[None, :]  # [rows, values]
    nearest = d2.argmin(1)
    votes = np.zeros((len(uniq), len(centers)))
    np.add.at(votes, (inv, nearest), 1.0)
    value = votes.argmax(1)
    used = {v: i for i, v in enumerate(sorted(set(value.tolist()), key=lambda v: int(np.flatnonzero(value == v)[0])))}
    return {int(g): used[int(v)] for g, v in zip(uniq, value)}


def _table(state, comp, combo: tuple, part: np.ndarray, rows: np.ndarray, fit: float, index: int,
           exact: bool = False):
    """One table of an MLP over ``combo``, valued by the clusters of its share ``part`` of the output:
    of its rows (:func:`row_clusters`) where ``combo`` explains that share exactly, else of its group
    means (a group whose output also depends on a feature outside ``combo`` is a mixture, and that
    mixture is information the read-out can still use)."""
    layer = comp[1]
    groups = F.combine([f.codes for f in combo])
    clusters = (row_clusters if exact else F.cluster_means)(part[rows], groups[rows])
    reg = state.registry
    mapping: dict = {}
    seen = set()
    for row in np.flatnonzero(rows):
        g = int(groups[row])
        if g in seen:
            continue
        seen.add(g)
        key = tuple(reg.values[f.codes[row]] if f.codes[row] >= 0 else None for f in combo)
        if any(k is None for k in key):
            continue
        mapping[key[0] if len(combo) == 1 else key] = clusters[g]
    if not mapping:
        return None
    if len(combo) == 1 and len(set(mapping.values())) == len(mapping):
        if index > 0:
            return None  # one more re-encoding of a feature the program already has
        mapping = {k: k for k in mapping}  # one distinct output per input value: the MLP re-encodes its input
    suffix = f"_{index}" if index else ""
    name = state.table_name(f"mlp{layer}{suffix}")
    sop = f"mlp_l{layer}{suffix}"
    if len(combo) == 1:
        expr = L.Map(table_or_affine(name, mapping), combo[0].expr, name=sop)
    else:
        fn = linear_relabel(mapping) or Table(name, mapping, None, 2)  # a sum where one tells the outputs apart
        expr = L.SequenceMap(fn, combo[0].expr, combo[1].expr, name=sop)
    step = core.Step(expr, [comp], "map", round(fit, 4), f"table over ({', '.join(f.name for f in combo)}) "
                     f"with {len(set(mapping.values()))} distinct outputs")
    state.add_feature(expr, layer + 0.75, comp)
    return step
