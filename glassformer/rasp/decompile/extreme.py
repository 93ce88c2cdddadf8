"""Reading a head as ``Maximum(select, v)`` / ``Minimum(select, v)``: the best selected key wins.

Such a head puts its weight on the keys of ``select`` whose value ``v`` ranks highest (or lowest): on
BOS (the default) where ``select`` holds no key with a value.  From the attention alone, ``select`` is
only partly visible: at query q whose winning keys hold ``m(q)``,

    a key k must be selected            if it is a winner,
    a key k must not be selected        if v(k) ranks above m(q), or ties m(q) without being a winner,
    a key k may go either way           if v(k) ranks below m(q) or has no value (it loses anyway).

So ``select`` is fitted (``fit.fit_selector``) only on the cells the first two lines decide (its
``care`` mask), and any selector that fits them gives the very same Maximum.  A row resting on BOS
must select no valued key.  The candidate is then scored like the other readings: the held-out R^2 of
the head's output grouped by the Maximum the fitted selector gives.
"""

from __future__ import annotations

import numpy as np

from glassformer.rasp.decompile import fit as F

MODES = ("max", "min")


def ranks(registry: F.Registry, feature: F.Feature) -> np.ndarray | None:
    """``[n_codes]`` float: the rank of each of the feature's values in Python's order (what the
    interpreter's ``max`` uses), NaN for codes the feature never takes; None if they cannot be ordered."""
    codes = np.unique(feature.codes[feature.codes >= 0])
    values = [registry.values[c] for c in codes]
    try:
        order = sorted(range(len(values)), key=lambda i: values[i])
    except TypeError:
        return None
    out = np.full(len(registry.values), np.nan)
    out[codes[order]] = np.arange(len(codes), dtype=np.float64)
    return out


def winner_rank(sel_cells: np.ndarray, cells: F.Cells, key_rank: np.ndarray, n_rows: int) -> np.ndarray:
    """Per query row: the best rank among its selected keys with a value (-inf where none)."""
    best = np.full(n_rows, -np.inf)
    use = sel_cells & np.isfinite(key_rank)
    np.maximum.at(best, cells.q[use], key_rank[use])
    return best


def care_mask(y: np.ndarray, cells: F.Cells, key_rank: np.ndarray, n_rows: int) -> np.ndarray:
    """The cells whose selection the attention ``y`` decides (module docstring)."""
    m = winner_rank(y, cells, key_rank, n_rows)  # [rows]
    return cells.allowed & (y | (np.isfinite(key_rank) & (key_rank >= m[cells.q])))


def candidates(state, y: np.ndarray, arrays: dict, feats: list, rows: np.ndarray, r2) -> list[tuple]:
    """``(score, "maximum"|"minimum", selector fit, value feature, (wins, order))`` for each value
    feature whose values the head copies (``y``: the soft selection, winners and their ties).  ``order``
    is None where the values rank in Python's order, else ``{value: rank}``: the head's own order, read
    from its scores (:func:`learned_ranks`; an MLP's output values are numbered arbitrarily, and values
    the head does not tell apart share a rank).  ``wins`` [rows]: the winning rank (-3: none selected)."""
    from glassformer.rasp.decompile.core import _copied

    cells, n_rows = state.cells, state.n_rows
    order = state.registry.order()
    out = []
    for vf in feats:
        if not 2 <= vf.n_values() <= 65:
            continue
        options = []
        python = ranks(state.registry, vf)
        if python is not None:
            options.append((python, None))
        learned = learned_ranks(state, vf, arrays)
        if learned is not None and (python is None or not _same_order(learned, python)):
            options.append((learned, {state.registry.values[c]: int(r) for c, r in enumerate(learned)
                                      if np.isfinite(r)}))
        for rank, value_order in options:
            row_rank = np.where(vf.codes >= 0, rank[np.maximum(vf.codes, 0)], np.nan)  # [rows]
            rank_codes = np.where(np.isnan(row_rank), -1, row_rank).astype(np.int64)
            copied = _copied(y, cells, rank_codes, n_rows)  # a Maximum copies one rank: the winners'
            if float((copied[rows] == -2).mean()) > 0.02 or r2(copied) < 0.9:
                continue
            for mode in MODES:
                key_rank = row_rank[cells.k]
                key_rank = np.where(np.isnan(key_rank), -np.inf, key_rank if mode == "max" else -key_rank)
                care = care_mask(y, cells, key_rank, n_rows)
                sfit = F.fit_selector(y, feats, cells, order, rows, care=care)
                if sfit is None or sfit.score < 0.9:
                    continue
                best = winner_rank(sfit.selected & cells.allowed, cells, key_rank, n_rows)
                wins = np.where(np.isfinite(best), np.abs(best), -3).astype(np.int64)
                penalty = 0.003 if value_order is None else 0.005
                out.append((r2(wins) - penalty, "maximum" if mode == "max" else "minimum", sfit, vf,
                            (wins, value_order)))
    return out


def learned_ranks(state, vf: F.Feature, arrays: dict, tie: float = 1e-3) -> np.ndarray | None:
    """The head's order of ``vf``'s values, from its scores: over the keys it scores above its sink (the
    selected ones), ``score(q, k) = a(q) + r(v_k)`` fitted by alternating means; the values ranked by
    ``r``, those within ``tie`` of the range of ``r`` of each other sharing a rank.  ``[n_codes]`` float
    like :func:`ranks`; None without a sink, with too few selected keys, or where ``r`` is flat."""
    if "score" not in arrays:
        return None
    cells = state.cells
    score = arrays["score"].astype(np.float64)
    kc = vf.codes[cells.k]
    use = cells.allowed & (score > arrays["sink_score"][cells.q]) & (kc >= 0)
    if use.sum() < 10:
        return None
    q, c, s = cells.q[use], kc[use], score[use]
    n_rows, n_codes = state.n_rows, len(state.registry.values)
    r = np.zeros(n_codes)
    for _ in range(20):
        a = np.bincount(q, weights=s - r[c], minlength=n_rows) / np.maximum(np.bincount(q, minlength=n_rows), 1)
        r = np.bincount(c, weights=s - a[q], minlength=n_codes) / np.maximum(np.bincount(c, minlength=n_codes), 1)
    seen = np.unique(c)
    span = float(r[seen].max() - r[seen].min())
    if span <= 1e-9:
        return None
    sorted_codes = seen[np.argsort(r[seen], kind="stable")]
    out = np.full(n_codes, np.nan)
    level = 0
    for i, code in enumerate(sorted_codes):
        if i and r[code] - r[sorted_codes[i - 1]] > tie * span:
            level += 1
        out[code] = level
    return out


def _same_order(a: np.ndarray, b: np.ndarray) -> bool:
    both = np.isfinite(a) & np.isfinite(b)
    return bool(np.array_equal(np.argsort(a[both], kind="stable"), np.argsort(b[both], kind="stable")))


def default_value(state, vf: F.Feature, wins: np.ndarray, act: np.ndarray, mode: str, order: dict | None = None):
    """The value the head writes where its selector is empty (``wins == -3``): a value it writes elsewhere
    whose output vector it repeats (within a tenth of the spread between values), else a fresh one just
    beyond the values (below the smallest for a Maximum) for numbers, or the string ``"default"``.  The
    values are ``vf``'s (by Python rank) or, with ``order``, the ranks themselves."""
    empty = wins == -3
    if not empty.any():
        return None
    python = ranks(state.registry, vf) if order is None else None
    by_rank = {} if python is None else {int(r): state.registry.values[c] for c, r in enumerate(python) if np.isfinite(r)}
    value = (lambda w: int(w)) if order is not None else (lambda w: by_rank[int(w)])
    present = np.unique(wins[wins >= 0])
    target = act[empty].mean(0)
    means = {w: act[wins == w].mean(0) for w in present}
    if means:
        centre = np.mean(list(means.values()), axis=0)
        spread = np.sqrt(np.mean([((m - centre) ** 2).sum() for m in means.values()]))
        w, m = min(means.items(), key=lambda wm: np.linalg.norm(wm[1] - target))
        if np.linalg.norm(m - target) <= 0.1 * max(spread, 1e-9):
            return value(w)
    values = [value(w) for w in present]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(values):
        return min(numbers) - 1 if mode == "max" else max(numbers) + 1
    return "default"
