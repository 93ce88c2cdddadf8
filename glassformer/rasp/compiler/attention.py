"""Attention heads for Aggregate, SelectorWidth, Maximum and Minimum, in residual keys (see ``mlp.py``).

Scores, before the sharpness beta multiplies the queries:

    score(q, k) = sum_clauses  q_c(q) . k_c(k)          1 for each clause that holds, so L when selected
                + 1 * (L - 1/2) [k is BOS]              BOS scores half a step below a selected key
                + [q is BOS] * (L + 1 + delta) [k is BOS]  the BOS query attends to BOS only
                (+ delta * rank(value_k)                Maximum / Minimum: the best selected key wins)

A clause ``pred(key, query)`` is the 0/1 matrix M[query value, key value], factored through its distinct
rows (or columns): W_Q maps each query value to its row's head dimension, W_K writes the row into the
key.  A query or key with no value (None, the zero vector) scores 0 and is never selected.

If some key is selected, softmax(beta * score) puts all but ``(N+1) exp(-beta * gap)`` of the weight on
the selected keys (equally, or on the top-ranked ones); if none is, on BOS, whose value is the
default.  SelectorWidth scores BOS like a selected key, so BOS keeps exactly 1/(w+1) of the weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from glassformer.rasp.compiler.assign import Folded, HeadTask
from glassformer.rasp.compiler.mlp import BOS, cat_key, encode, num_key
from glassformer.rasp.compiler.values import ValueSet, sort_values, value_key
from glassformer.rasp.errors import RaspCompileError

RANK_WEIGHT = 0.25  # delta: the largest rank bonus, below the 1/2 that separates BOS from a selected key


@dataclass
class HeadSpec:
    """One attention head in residual keys; the weights stage scales W_Q by ``beta``."""

    op: str
    mode: str
    qk: list[tuple[dict, float, dict, float]] = field(default_factory=list)  # (W_Q col, b_Q, W_K col, b_K)
    ov: list[tuple[dict, dict]] = field(default_factory=list)  # (W_V col, W_O row)
    n_clauses: int = 1
    gap: float = 0.5  # score gap between the winning keys and every other key
    value_scale: float = 1.0  # how far apart two outputs can be (L1 for categorical, |a - b| numerical)
    score_inputs: dict[str, float] = field(default_factory=dict)  # input label -> score error per unit input error
    value_inputs: dict[str, float] = field(default_factory=dict)  # input label -> output error per unit error
    default: dict = field(default_factory=dict)  # the default's residual vector (written at BOS; cleaned)
    beta: float = 1.0

    @property
    def d_head(self) -> int:
        return max(len(self.qk), len(self.ov), 1)


def build_head(task: HeadTask, values: dict[str, ValueSet]) -> HeadSpec:
    node, op = task.node, task.node.op
    spec = HeadSpec(node.origin or node.label, op.mode)
    clauses = task.clauses
    constant = op.selector.constant
    L = max(len(clauses), 1)
    spec.n_clauses = L
    if constant is True:  # every key but BOS scores 1
        spec.qk.append(({}, 1.0, {BOS: -1.0}, 1.0))
    for keys, queries, pred in clauses:
        _clause(spec, keys, queries, pred, values)
    rank_top = 0.0
    if op.mode in ("max", "min"):
        rank_top = _rank(spec, task.value, values, op.mode)
    bos_score = L if op.mode == "width" else L - 0.5
    spec.qk.append(({}, 1.0, {BOS: bos_score}, 0.0))
    spec.qk.append(({BOS: 1.0}, 0.0, {BOS: L + 1.0 + rank_top}, 0.0))
    _values(spec, task, values)
    if op.mode == "width":
        spec.gap = 1.0
    return spec


def _clause(spec: HeadSpec, keys: Folded, queries: Folded, pred, values: dict[str, ValueSet]) -> None:
    kx = values[keys.node.label].non_none
    qx = values[queries.node.label].non_none
    _check_twins(spec, keys, queries, pred, values)
    matrix = []
    failures, first_error = 0, None
    for q in qx:
        fq = _safe(queries, q)
        row = []
        for k in kx:
            fk = _safe(keys, k)
            try:
                row.append(1.0 if pred(fk, fq) else 0.0)
            except Exception as e:  # the interpreter raises on inputs holding this pair: the model does not select
                row.append(0.0)
                failures += 1
                first_error = first_error or f"{type(e).__name__}: {e} on key {fk!r}, query {fq!r}"
        matrix.append(tuple(row))
    if matrix and matrix[0] and failures == len(qx) * len(kx):
        raise RaspCompileError(spec.op, f"its selector's predicate fails on every key and query its inputs can take "
                                        f"({first_error}); the interpreter rejects every input")
    rows: dict[tuple, list] = {}
    for q, row in zip(qx, matrix):
        if any(row):
            rows.setdefault(row, []).append(q)
    cols: dict[tuple, list] = {}
    for j, k in enumerate(kx):
        col = tuple(r[j] for r in matrix)
        if any(col):
            cols.setdefault(col, []).append(k)
    if len(rows) <= len(cols):
        for row, qs in rows.items():
            w_k = {cat_key(keys.node, k): w for k, w in zip(kx, row) if w}
            spec.qk.append(({cat_key(queries.node, q): 1.0 for q in qs}, 0.0, w_k, 0.0))
    else:
        for col, ks in cols.items():
            w_q = {cat_key(queries.node, q): w for q, w in zip(qx, col) if w}
            spec.qk.append((w_q, 0.0, {cat_key(keys.node, k): 1.0 for k in ks}, 0.0))
    for label in (keys.node.label, queries.node.label):
        spec.score_inputs[label] = spec.score_inputs.get(label, 0.0) + 1.0


def _selects(pred, keys: Folded, queries: Folded, k, q) -> bool:
    try:
        return bool(pred(_safe(keys, k), _safe(queries, q)))
    except Exception:
        return False


def _check_twins(spec: HeadSpec, keys: Folded, queries: Folded, pred, values: dict[str, ValueSet]) -> None:
    """A predicate must treat float twins (see ``values.py``) alike: the model cannot tell them apart."""
    kset, qset = values[keys.node.label], values[queries.node.label]
    if not kset.twins and not qset.twins:
        return
    for q in qset.all_values:
        for k in kset.all_values:
            if q is None or k is None:
                continue
            rq, rk = qset.representative(q), kset.representative(k)
            if _selects(pred, keys, queries, k, q) != _selects(pred, keys, queries, rk, rq):
                raise RaspCompileError(spec.op, f"its selector tells key {k!r} from {rk!r} (or query {q!r} from "
                                                f"{rq!r}), values that differ only by float rounding; no model can "
                                                "tell them apart (round them in an earlier Map)", float_limited=True)


def _safe(folded: Folded, x):
    try:
        return folded(x)
    except Exception:
        return None


def _rank(spec: HeadSpec, value: Folded, values: dict[str, ValueSet], mode: str) -> float:
    """Add the rank term; return its largest value.  Sets ``spec.gap`` to the smallest rank step."""
    node = value.node
    if node.is_numerical:
        vset = values[node.label]
        if not vset.finite:
            raise RaspCompileError(spec.op, f"{mode} needs the finite value set of {node.label}")
        vs = sorted(float(v) for v in vset.non_none)
        span = (vs[-1] - vs[0]) or 1.0
        step = min((b - a for a, b in zip(vs, vs[1:])), default=span)
        sign = 1.0 if mode == "max" else -1.0
        origin = vs[0] if mode == "max" else vs[-1]
        w = sign * RANK_WEIGHT / span
        spec.qk.append(({}, 1.0, {num_key(node): w, BOS: w * origin}, -w * origin))
        spec.gap = min(0.25, RANK_WEIGHT * step / span)  # 0.25: BOS vs an unselected key with a high rank
        spec.score_inputs[node.label] = spec.score_inputs.get(node.label, 0.0) + abs(w)
        return RANK_WEIGHT
    xs = values[node.label].non_none
    ys = sort_values({y for y in (_safe(value, x) for x in xs) if y is not None})
    if mode == "min":
        ys = ys[::-1]
    m = len(ys)
    rank = {_k(y): (i + 1) / m * RANK_WEIGHT for i, y in enumerate(ys)}
    w_k = {cat_key(node, x): rank[_k(_safe(value, x))] for x in xs if _safe(value, x) is not None}
    spec.qk.append(({}, 1.0, w_k, 0.0))
    spec.gap = min(0.25, RANK_WEIGHT / max(m, 1))
    spec.score_inputs[node.label] = spec.score_inputs.get(node.label, 0.0) + RANK_WEIGHT
    return RANK_WEIGHT


def _k(y):
    return (value_key(y),)  # True and 1 are different outputs


def _values(spec: HeadSpec, task: HeadTask, values: dict[str, ValueSet]) -> None:
    node, op = task.node, task.node.op
    if op.mode == "width":
        spec.ov.append(({BOS: 1.0}, {num_key(node): 1.0}))
        spec.value_scale = 1.0
        return
    value = task.value
    src = value.node
    xs = values[src.label].non_none
    default_vec = encode(node, op.default)
    spec.default = default_vec
    if node.is_numerical:
        if src.is_numerical:  # a numerical SOp read directly
            w_v = {num_key(src): 1.0}
            spec.value_inputs[src.label] = 1.0
        else:  # a categorical SOp through a folded numerical Map
            w_v = {cat_key(src, x): float(_safe(value, x) or 0.0) for x in xs}
            spec.value_inputs[src.label] = max((abs(w) for w in w_v.values()), default=1.0)
        if op.default:
            w_v[BOS] = float(op.default)
        spec.ov.append(({k: w for k, w in w_v.items() if w}, {num_key(node): 1.0}))
        vset = values[node.label]
        spec.value_scale = 2.0 * max(vset.magnitude, abs(float(op.default or 0.0)), 1e-30)
        return
    by_output: dict[Any, list] = {}
    for x in xs:
        y = _safe(value, x)
        if y is not None:
            by_output.setdefault(_k(y), []).append(x)
    if op.default is not None:
        by_output.setdefault(_k(op.default), [])
    for yk, sources in by_output.items():
        w_v = {cat_key(src, x): 1.0 for x in sources}
        if op.default is not None and _k(op.default) == yk:
            w_v[BOS] = 1.0
        spec.ov.append((w_v, {cat_key(node, yk[0]): 1.0}))
    spec.value_inputs[src.label] = 1.0
    spec.value_scale = 2.0


def leak_bound(spec: HeadSpec, n_keys: int, sigma: float) -> float:
    """Largest attention weight off the winning keys, with scores perturbed by at most ``sigma``."""
    gap = spec.gap - 2.0 * sigma
    if gap <= 0:
        return math.inf
    return (n_keys + 1) * math.exp(-spec.beta * gap)
