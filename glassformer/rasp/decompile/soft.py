"""Soft heads and numerical read-outs: what trained (not compiled) models do most.

A trained head rarely copies one value; it spreads its attention evenly over a set of keys, and what it
writes is then a linear function of the **distribution** of the value feature over that set:

    head(q) = sum_k a_qk v(x_k) = sum_c frac_c(q) v_c,    frac_c(q) = |{k in S(q): x_k = c}| / |S(q)|

One axis of ``frac`` (``core._fit_marks``: a single numerical mean) loses the rest when the value vectors
``v_c`` span more than one direction (a majority head writes the whole letter histogram).  Then the head
reads as the tuple of fractions (:func:`fit_dist`), in RASP one numerical ``Aggregate`` of an indicator per
value, packed into one tuple-valued SOp (:func:`dist_expr`).

A head whose output depends on how many of its keys hold a quantity past a line (a prefix with more
closers than openers) reads as the numerical mean of a :class:`Threshold` mark (:func:`fit_threshold`).
Both are tried with the head's fitted selector and with "every key it can see" (:func:`candidates`).
The read-outs that take such quantities in are in :mod:`.numeric`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from glassformer.rasp import language as L


class Indicator:
    """``1`` where the value is ``value``, else ``0`` (the mark a fraction averages)."""

    def __init__(self, value: Any):
        self.value = value

    def __call__(self, x):
        return 1 if x == self.value else 0

    @property
    def source(self) -> str:
        return f"lambda x: 1 if x == {self.value!r} else 0"


class Start:
    """``(x,)``: the first entry of a packed tuple."""

    source = "lambda x: (x,)"

    def __call__(self, x):
        return (x,)


class Append:
    """``t + (y,)``: one more entry of a packed tuple."""

    source = "lambda t, y: t + (y,)"

    def __call__(self, t, y):
        return t + (y,)


def fit_dist(sel_cells: np.ndarray, cells, codes: np.ndarray, act: np.ndarray, n_rows: int, rows: np.ndarray,
             max_values: int = 8, min_ratio: float = 0.05) -> tuple[list[int], np.ndarray, float] | None:
    """``(value codes, fractions [rows, values], R^2)`` when the head's output needs more than one axis of
    the selected values' distribution (second singular value of the least-squares value vectors >=
    ``min_ratio`` of the first); None where one axis suffices or the value feature has too many values.
    R^2 is that of the linear model ``act = frac @ V`` on ``rows``, fitted on the training inputs and
    scored on the others (the head's output is linear in ``frac`` when its attention is even)."""
    vals = np.unique(codes[codes >= 0])
    if len(vals) < 3 or len(vals) > max_values:
        return None
    idx = np.searchsorted(vals, np.maximum(codes, 0))
    dist = np.zeros((n_rows, len(vals)))  # [rows, values] counts of each value among the selected keys
    sel = sel_cells & (codes[cells.k] >= 0)
    np.add.at(dist, (cells.q[sel], idx[cells.k[sel]]), 1.0)
    count = dist.sum(1, keepdims=True)
    use = count[:, 0] > 0
    if use.sum() < 2 * len(vals):
        return None
    frac = np.where(count > 0, dist / np.maximum(count, 1), 0.0)  # [rows, values]
    M, *_ = np.linalg.lstsq(frac[use], act[use], rcond=None)  # [values, d_model] the value vectors v_c
    s = np.linalg.svd(M - M.mean(0), compute_uv=False)
    if len(s) < 2 or s[0] < 1e-9 or s[1] < min_ratio * s[0]:
        return None
    train, test = rows & cells.train & use, rows & ~cells.train & use
    if train.sum() < len(vals) or not test.any():
        return None
    V, *_ = np.linalg.lstsq(np.c_[frac[train], np.ones(train.sum())], act[train], rcond=None)
    resid = act[rows & ~cells.train] - np.c_[frac[rows & ~cells.train], np.ones((rows & ~cells.train).sum())] @ V
    held = act[rows & ~cells.train]
    total = ((held - held.mean(0)) ** 2).sum()
    r2 = float(1 - (resid ** 2).sum() / total) if total > 1e-12 else 1.0
    return [int(v) for v in vals], frac, r2


def dist_groups(frac: np.ndarray) -> np.ndarray:
    """One group id per row for its tuple of fractions."""
    return np.unique(np.round(frac, 6), axis=0, return_inverse=True)[1].reshape(-1)


def dist_expr(sel: L.Selector, value: L.SOp, values: list, stem: str) -> L.SOp:
    """``(frac_c1, frac_c2, ...)``: the fraction of each value among the selected keys, as one SOp."""
    packed = None
    for i, v in enumerate(values):
        mark = L.Map(Indicator(v), value, encoding=L.NUMERICAL, name=f"is_{stem}_{i}")
        frac = L.Aggregate(sel, mark, encoding=L.NUMERICAL, name=f"frac_{stem}_{i}")
        last = i == len(values) - 1
        name = f"dist_{stem}" if last else f"dist_{stem}_{i}"
        packed = L.Map(Start(), frac, name=name) if packed is None else L.SequenceMap(Append(), packed, frac, name=name)
    return packed


class Threshold:
    """``1`` where the value exceeds ``t`` (``above``) or stays at or below it, else ``0``: the mark of a
    key whose numerical feature crosses a line (a prefix with more closers than openers)."""

    def __init__(self, t: float, above: bool = True):
        self.t, self.above = t, above

    def __call__(self, x):
        return int((x > self.t) == self.above)

    @property
    def source(self) -> str:
        return f"lambda x: 1 if x {'>' if self.above else '<='} {self.t!r} else 0"


def fit_threshold(sel_cells: np.ndarray, cells, codes: np.ndarray, order: np.ndarray, n_rows: int, r2,
                  max_cuts: int = 64) -> tuple[float, float] | None:
    """The cut ``t`` of a numerical key feature whose marks ``[x > t]``, averaged over the selected keys,
    best explain the head's output (``r2`` of the grouping by that fraction): ``(score, t)``; None if the
    feature is not numerical or has fewer than 3 values."""
    vals = np.unique(codes[codes >= 0])
    nums = order[vals] if len(vals) else vals
    if len(vals) < 3 or np.isnan(nums).any() or (nums >= 1e6).any():
        return None
    uniq = np.unique(nums)  # [values] sorted
    cuts = (uniq[1:] + uniq[:-1]) / 2  # [values - 1] midpoints
    if len(cuts) > max_cuts:
        cuts = np.quantile(cuts, np.linspace(0, 1, max_cuts))
    kc = codes[cells.k]
    w = sel_cells & (kc >= 0)
    rank = np.searchsorted(uniq, order[np.maximum(kc[w], 0)])  # [selected cells] rank of the key's value
    hist = np.bincount(cells.q[w] * len(uniq) + rank, minlength=n_rows * len(uniq)).reshape(n_rows, len(uniq))
    count = hist.sum(1)  # [rows] selected keys
    at_or_below = np.cumsum(hist, 1)  # [rows, values] selected keys with value <= uniq[j]
    best = None
    for t in cuts:  # every cut from one histogram of the selected keys' values per query row
        above = count - at_or_below[:, np.searchsorted(uniq, t, side="right") - 1]
        frac = np.where(count > 0, above / np.maximum(count, 1), 0.0)
        score = r2(np.round(frac * 1e6).astype(np.int64))
        if best is None or score > best[0]:
            best = (score, float(round(t, 6)))
    return best


def is_numerical(expr: L.SOp) -> bool:
    """Whether a feature's values are quantities (a numerical SOp, a count, an index, a tuple of
    fractions), not labels that happen to be numbers (an MLP table's output numbers)."""
    if expr.is_numerical or isinstance(expr, (L.SelectorWidth, L.Indices)):
        return True
    return isinstance(expr, (L.Map, L.SequenceMap)) and isinstance(expr.f, (Start, Append))


def everything(y: np.ndarray, features: list, cells, rows: np.ndarray):
    """The selector of a head that averages over every key it can see: ``Select(tokens, tokens, TRUE)``
    (scored, as any selector, by how many query rows' selections it reproduces exactly)."""
    from glassformer.rasp.decompile import fit as F

    sel = np.ones(len(cells.q), bool)
    return F.SelectorFit("named", features[0], features[0], predicate="TRUE", selected=sel,
                         score=F.row_exact(y, sel, cells, rows))


def candidates(sfit, y: np.ndarray, features: list, cells, act: np.ndarray, rows: np.ndarray, order: np.ndarray,
               r2) -> list[tuple]:
    """A soft head's readings as fractions, for its fitted selector ``sfit`` and for "every key it can
    see": ``(score, "dist", selector, value feature, value codes)`` (:func:`fit_dist`) and ``(score,
    "above", selector, feature, cut)`` (:func:`fit_threshold`); scores are R^2 less a small price."""
    n_rows = len(cells.train)
    fits = [sfit] if sfit.kind == "named" and sfit.predicate == "TRUE" else [sfit, everything(y, features, cells, rows)]
    out = []
    for fit in fits:
        sel_cells = fit.selected & cells.allowed
        for vf in features:
            dist = fit_dist(sel_cells, cells, vf.codes, act, n_rows, rows)
            if dist is not None:  # more than one axis of the selected values' distribution
                out.append((dist[2] - 0.008, "dist", fit, vf, dist[0]))
            if is_numerical(vf.expr):  # the fraction of selected keys whose quantity crosses a line
                cut = fit_threshold(sel_cells, cells, vf.codes, order, n_rows, r2)
                if cut is not None:
                    out.append((cut[0] - 0.006, "above", fit, vf, cut[1]))
    return out
