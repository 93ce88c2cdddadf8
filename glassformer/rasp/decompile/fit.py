"""Fitting discrete RASP operations to what a component does, on many inputs at once (numpy).

Every input position is one *row*; every (query, key) pair of positions in one input is one *cell*.
A **feature** is a RASP SOp with its value at every row (from the interpreter), coded as ints in a
registry shared by all features (so ``EQ`` across two features is code equality; ``-1`` is None).

* :func:`fit_selector`: which key positions a head attends to, read as ``Select(keys, queries, predicate)``:
  a named comparison (``EQ``, ``LT``, ..., ``TRUE``) where one fits, a conjunction of two of them, and
  otherwise a table over (key value, query value).  Scored by *row exactness*: the fraction of query
  positions whose whole selected set the predicate reproduces, on inputs held out from the fit.
* :func:`grouped_r2`: how much of a vector activation (a head's or MLP's output) one discrete variable
  explains: ``R^2 = 1 - sum_i |a_i - mean_{g(i)}|^2 / sum_i |a_i - mean|^2``, group means fitted on
  half of the inputs and scored on the other half (an unseen value predicts the overall mean).
* :func:`fit_table`: the majority output for each combination of input values (Map / SequenceMap tables).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np

NAMED = ("EQ", "NE", "LT", "LEQ", "GT", "GEQ")


def vkey(v: Any):
    """A value as a dict key: 1, 1.0 and True stay distinct; floats rounded against summation noise."""
    if isinstance(v, float):
        return (float, round(v, 9))
    if isinstance(v, tuple):
        return (tuple, tuple(vkey(x) for x in v))
    return (type(v), v)


class Registry:
    """Global value codes, and an order over them where one exists (numbers by value, strings by rank)."""

    def __init__(self):
        self.codes: dict = {}
        self.values: list = []

    def code(self, v: Any) -> int:
        if v is None:
            return -1
        k = vkey(v)
        if k not in self.codes:
            self.codes[k] = len(self.values)
            self.values.append(v)
        return self.codes[k]

    def order(self) -> np.ndarray:
        """``[n_values]`` float: the number for numbers, the rank among strings for strings, NaN otherwise."""
        out = np.full(len(self.values), np.nan)
        strings = sorted({v for v in self.values if isinstance(v, str)})
        rank = {s: i for i, s in enumerate(strings)}
        for i, v in enumerate(self.values):
            if isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(float(v)):
                out[i] = float(v)
            elif isinstance(v, str):
                out[i] = rank[v] + 1e6  # strings never compare as numbers
            elif isinstance(v, bool):
                out[i] = float(v) + 2e6
        return out


@dataclass
class Feature:
    """A SOp the program already has, with its coded value at every row."""

    name: str
    expr: Any  # the RASP SOp
    codes: np.ndarray  # [rows] int, -1 = None
    layer: float  # the layer whose output holds it (-1: an input primitive)
    component: Any = None

    def n_values(self) -> int:
        return len(np.unique(self.codes))


@dataclass
class Cells:
    """Every (query, key) pair of program positions within one input, and which ones the model can see."""

    q: np.ndarray  # [cells] query row
    k: np.ndarray  # [cells] key row
    allowed: np.ndarray  # [cells] bool: the model can attend there (k <= q for a decoder)
    train: np.ndarray  # [rows] bool: the row's input is in the fitting half


@dataclass
class SelectorFit:
    kind: str  # "named" | "and" | "table" | "map_eq" | "keyset"
    key: Feature
    query: Feature
    predicate: str | None = None  # a NAMED or "TRUE" (kind named)
    table: set = field(default_factory=set)  # (key value, query value) pairs selected (kind table)
    mapping: dict = field(default_factory=dict)  # query value -> key value (kind map_eq)
    keyset: set = field(default_factory=set)  # key values selected whatever the query (kind keyset)
    second: "SelectorFit | None" = None  # the other atom of a conjunction
    score: float = 0.0  # held-out row exactness
    selected: np.ndarray | None = None  # [cells] bool, the predicate's selection


def cell_selection(att: np.ndarray, sink: np.ndarray, cells: Cells, hard: bool) -> np.ndarray:
    """Which allowed cells a head selects.  Soft: weight >= half the row's largest weight (the sink's
    included, so a row that mostly rests on the sink selects nothing).  Hard: the row's arg-max key,
    unless the sink weighs more."""
    rows = int(cells.q.max()) + 1 if len(cells.q) else 0
    a = np.where(cells.allowed, att, -1.0)
    row_max = np.full(rows, -1.0)
    np.maximum.at(row_max, cells.q, a)
    top = np.maximum(row_max, sink)
    if hard:
        return cells.allowed & (a >= row_max[cells.q] - 1e-9) & (row_max[cells.q] >= sink[cells.q])
    return cells.allowed & (a >= 0.5 * top[cells.q])


def row_exact(y: np.ndarray, pred: np.ndarray, cells: Cells, rows_mask: np.ndarray,
              care: np.ndarray | None = None) -> float:
    """The fraction of query rows (``rows_mask``) whose selected set ``pred`` reproduces exactly (on the
    ``care`` cells only, where given: the others may go either way)."""
    err = (y != pred) & cells.allowed
    if care is not None:
        err &= care
    err = err.astype(np.int64)
    n_rows = len(rows_mask)
    errs = np.bincount(cells.q, weights=err, minlength=n_rows)
    has_cells = np.bincount(cells.q, weights=cells.allowed, minlength=n_rows) > 0
    use = rows_mask & has_cells
    return float((errs[use] == 0).mean()) if use.any() else 0.0


def named_selection(name: str, kc: np.ndarray, qc: np.ndarray, order: np.ndarray) -> np.ndarray | None:
    """The cells ``Select(key, query, name)`` selects; None where the values cannot be ordered."""
    if name == "TRUE":
        return np.ones(len(kc), dtype=bool)
    valid = (kc >= 0) & (qc >= 0)
    if name == "EQ":
        return valid & (kc == qc)
    if name == "NE":
        return valid & (kc != qc)
    ko = np.where(kc >= 0, order[np.maximum(kc, 0)], np.nan)
    qo = np.where(qc >= 0, order[np.maximum(qc, 0)], np.nan)
    vk, vq = ko[kc >= 0], qo[qc >= 0]
    if np.isnan(vk).any() or np.isnan(vq).any() or (len(vk) and len(vq) and (vk.max() >= 1e6) != (vq.min() >= 1e6)):
        return None
    with np.errstate(invalid="ignore"):
        op = {"LT": np.less, "LEQ": np.less_equal, "GT": np.greater, "GEQ": np.greater_equal}[name]
        return valid & op(ko, qo)


def fit_selector(y: np.ndarray, features: list[Feature], cells: Cells, order: np.ndarray,
                 rows: np.ndarray | None = None, max_table: int = 4096, max_values: int = 64,
                 care: np.ndarray | None = None) -> SelectorFit | None:
    """The best predicate over every (key feature, query feature) pair, scored on the query ``rows``
    (default: all); see the module docstring.  ``care`` [cells] bool: only these cells must match ``y``
    (a Maximum's selector is free on the keys its winner beats anyway)."""
    n_rows = len(cells.train)
    every = np.ones(n_rows, bool) if rows is None else rows
    held = ~cells.train & every
    best: SelectorFit | None = None
    penalty = {"named": 0.0, "keyset": 0.001, "map_eq": 0.002, "and": 0.003, "table": 0.006}

    def consider(fit: SelectorFit):
        nonlocal best
        if best is None or fit.score - penalty[fit.kind] > best.score - penalty[best.kind] + 1e-12:
            best = fit

    atoms = []
    features = [f for f in features if f.n_values() <= max_values]  # a key or query of hundreds of values is no reading
    for kf in features:
        kc = kf.codes[cells.k]
        keyset = _keyset_fit(y, kc, kf, features[0], cells, every, care)
        if keyset is not None:
            keyset.score = row_exact(y, keyset.selected, cells, held, care)
            consider(keyset)
        for qf in features:
            qc = qf.codes[cells.q]
            for name in (("TRUE",) if kf is qf and kf is features[0] else ()) + NAMED:
                sel = named_selection(name, kc, qc, order)
                if sel is None:
                    continue
                fit = SelectorFit("named", kf, qf, predicate=name, selected=sel)
                fit.score = row_exact(y, sel, cells, every, care)
                consider(fit)
                if name != "TRUE" and not (sel < y)[cells.allowed].any():  # selects all the head does
                    atoms.append(fit)
            table = _table_fit(y, kc, qc, kf, qf, cells, max_table, every, care)
            if table is not None:
                table.score = row_exact(y, table.selected, cells, held, care)
                consider(table)
    if best is not None and best.score < 0.999 and atoms:
        atoms.sort(key=lambda a: int((a.selected & cells.allowed).sum()))
        atoms = atoms[:24]
        for i, a in enumerate(atoms):
            for b in atoms[i + 1:]:
                sel = a.selected & b.selected
                score = row_exact(y, sel, cells, every, care)
                if score > best.score + penalty["and"]:
                    fit = SelectorFit("and", a.key, a.query, predicate=a.predicate, second=b, selected=sel, score=score)
                    consider(fit)
        # a comparison and a set of key values: Select(indices, indices, LEQ) & Select(is_open, Full(True), EQ)
        for a in atoms[:8]:
            for kf in features:
                b = _keyset_fit(y, kf.codes[cells.k], kf, features[0], cells, every, care, within=a.selected)
                if b is None:
                    continue
                sel = a.selected & b.selected
                score = row_exact(y, sel, cells, every, care)
                if score > best.score + penalty["and"]:
                    consider(SelectorFit("and", a.key, a.query, predicate=a.predicate, second=b, selected=sel,
                                         score=score))
    return best


def _keyset_fit(y, kc, kf, qf, cells: Cells, rows: np.ndarray, care: np.ndarray | None = None,
                within: np.ndarray | None = None) -> SelectorFit | None:
    """``key in S`` whatever the query: the key values selected on most of their (fitting) cells."""
    valid = (kc >= 0) & cells.allowed
    fit_cells = valid & cells.train[cells.q] & rows[cells.q]
    for mask in (care, within):
        if mask is not None:
            fit_cells &= mask
    if not fit_cells.any():
        return None
    n = int(kc.max()) + 1
    ones = np.bincount(kc[fit_cells], weights=y[fit_cells], minlength=n)
    total = np.bincount(kc[fit_cells], minlength=n)
    chosen = (total > 0) & (ones * 2 > total)
    if not chosen.any() or chosen[total > 0].all():
        return None  # every key value: that is TRUE
    sel = valid & chosen[np.maximum(kc, 0)]
    return SelectorFit("keyset", kf, qf, keyset={int(c) for c in np.flatnonzero(chosen)}, selected=sel)


def _table_fit(y, kc, qc, kf, qf, cells: Cells, max_table: int, rows: np.ndarray,
               care: np.ndarray | None = None) -> SelectorFit | None:
    valid = (kc >= 0) & (qc >= 0) & cells.allowed
    fit_cells = valid & cells.train[cells.q] & rows[cells.q]
    if care is not None:
        fit_cells &= care
    pairs = kc.astype(np.int64) * (1 << 31) + np.maximum(qc, 0)
    uniq, inv = np.unique(pairs[valid], return_inverse=True)
    if len(uniq) > max_table:
        return None
    inv_all = np.full(len(pairs), -1)
    inv_all[valid] = inv
    ones = np.bincount(inv_all[fit_cells], weights=y[fit_cells], minlength=len(uniq))
    total = np.bincount(inv_all[fit_cells], minlength=len(uniq))
    chosen = (total > 0) & (ones * 2 > total)
    sel = valid & chosen[np.maximum(inv_all, 0)]
    table = {(int(p >> 31), int(p & ((1 << 31) - 1))) for p in uniq[chosen]}
    fit = SelectorFit("table", kf, qf, table=table, selected=sel)
    by_query: dict[int, set] = {}
    for kcode, qcode in table:
        by_query.setdefault(qcode, set()).add(kcode)
    if by_query and all(len(v) == 1 for v in by_query.values()):
        fit.kind = "map_eq"
        fit.mapping = {q: next(iter(k)) for q, k in by_query.items()}
    return fit


def grouped_r2(act: np.ndarray, groups: np.ndarray, train: np.ndarray) -> float:
    """Held-out R^2 of ``act`` [rows, d] predicted by the mean of its group (see the module docstring)."""
    uniq, inv = np.unique(groups, return_inverse=True)
    d = act.shape[1]
    sums = np.zeros((len(uniq), d))
    np.add.at(sums, inv[train], act[train])
    counts = np.bincount(inv[train], minlength=len(uniq))
    overall = act[train].mean(0) if train.any() else act.mean(0)
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], overall)
    test = ~train
    resid = ((act[test] - means[inv[test]]) ** 2).sum()
    total = ((act[test] - act[test].mean(0)) ** 2).sum()
    return float(1 - resid / total) if total > 1e-12 else 1.0


def combine(codes: list[np.ndarray]) -> np.ndarray:
    """One group id per row for a tuple of coded features."""
    if len(codes) == 1:
        return codes[0]
    stacked = np.stack(codes, 1)
    return np.unique(stacked, axis=0, return_inverse=True)[1].reshape(-1)


def cluster_means(act: np.ndarray, groups: np.ndarray, rel_tol: float = 0.1) -> dict[int, int]:
    """Merge groups whose mean activations lie within ``rel_tol`` of the spread of the means: group id ->
    cluster id (0, 1, ... in order of first appearance by group id)."""
    uniq, inv = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(uniq), act.shape[1]))
    np.add.at(sums, inv, act)
    means = sums / np.bincount(inv)[:, None]
    spread = np.sqrt(((means - means.mean(0)) ** 2).sum(1).mean()) if len(uniq) > 1 else 1.0
    tol = rel_tol * max(spread, 1e-9)
    centers: list[np.ndarray] = []
    out: dict[int, int] = {}
    for g, m in zip(uniq.tolist(), means):
        for c, center in enumerate(centers):
            if np.linalg.norm(m - center) <= tol:
                out[g] = c
                break
        else:
            out[g] = len(centers)
            centers.append(m)
    return out


def fit_table(target: list, inputs: list[list], train: np.ndarray) -> tuple[dict, Any, float]:
    """The majority ``target`` for each input tuple (fitted on ``train`` rows; keyed by the raw input
    values, a tuple of them for two or more inputs), the overall majority as the default for unseen
    tuples, and the held-out accuracy."""
    counts: dict = {}
    overall: dict = {}
    keys = [tuple(vkey(x[i]) for x in inputs) for i in range(len(target))]
    raw: dict = {}
    values: dict = {}
    for i in np.flatnonzero(train):
        k, t = keys[i], vkey(target[i])
        values[t] = target[i]
        raw.setdefault(k, tuple(x[i] for x in inputs))
        counts.setdefault(k, {}).setdefault(t, 0)
        counts[k][t] += 1
        overall[t] = overall.get(t, 0) + 1
    default = values[max(overall, key=overall.get)] if overall else None
    by_key = {k: values[max(c, key=c.get)] for k, c in counts.items()}
    test = np.flatnonzero(~train)
    hits = sum(vkey(by_key.get(keys[i], default)) == vkey(target[i]) for i in test)
    table = {(raw[k][0] if len(inputs) == 1 else raw[k]): v for k, v in by_key.items()}
    return table, default, hits / max(len(test), 1)
