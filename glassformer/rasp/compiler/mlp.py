"""Exact MLPs for element-wise functions over finite value sets: one hidden ReLU layer, built as a lookup table.

Residual dimensions are named by keys: ``(label, value)`` for a categorical value (one-hot),
``(label,)`` for a numerical SOp, ``BOS`` for the dimension that is 1 only at the BOS position.
Three constructions, chosen by the inputs' encodings:

**table** (all inputs categorical).  The inputs' combinations that map to one output value y are cut into
*rectangles* S_1 x ... x S_k (disjoint, covering); each rectangle is one hidden unit

    h = ReLU( sum_i sum_{x in S_i} a_i[x]  -  (k - 1) )          1 inside the rectangle, 0 outside

writing y's one-hot (or the number y).  Inputs read from attention carry a small error, so there
each unit is a *step pair*  ReLU(u + 1/2) - ReLU(u - 1/2)  with  u = 2 (sum - k + 1/2),  exactly 0
or 1 while the inputs are within 1/4 of one-hot.

**lookup** (one numerical input s with sorted values s_1 < ... < s_m, any categorical inputs).
    g(s) = g(s_1) + sum_j [s >= t_j] (g(s_j+1) - g(s_j)),     t_j = (s_j + s_j+1) / 2,
with a step pair per threshold where g changes, slope kappa_j = 4 / (s_j+1 - s_j): exact while s is within
a quarter gap of a value in its set.  Categorical inputs select which g: the step's pre-activation gets
+G (gate - k), switching it off (u <= -1/2) unless the categorical inputs are in the unit's rectangle.

**additive** (numerical output that is a sum of functions of one input each): one table or lookup per
input, summed; an input with no finite value set must enter linearly (x = ReLU(x) - ReLU(-x)).

Every unit also gets a large negative weight on BOS, so the MLP writes nothing at the BOS position.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from glassformer.rasp.compiler.graph import Node
from glassformer.rasp.compiler.values import ValueSet, combinations_count, value_key
from glassformer.rasp.errors import RaspCompileError

BOS = ("bos",)
CAT_TOLERANCE = 0.25  # total one-hot deviation a gate tolerates
MARGIN = 0.125  # delta: a unit reading noisy one-hots fires at (sum - (k-1) - delta) / (1 - delta)
EPS = {"float32": 2.0 ** -23, "float64": 2.0 ** -52}  # machine epsilon of the model's dtype


def cat_key(node: Node, value: Any) -> tuple:
    return (node.label, value_key(value))  # True and 1 are different dimensions


def num_key(node: Node) -> tuple:
    return (node.label,)


@dataclass
class MLPSpec:
    """Hidden units of one element-wise operation, in residual keys (placed by the weights stage)."""

    op: str  # the node computed (for messages)
    w_in: list[tuple[tuple, int, float]] = field(default_factory=list)  # (input key, unit, weight)
    b_in: list[float] = field(default_factory=list)  # [n_units]
    w_out: list[tuple[int, tuple, float]] = field(default_factory=list)  # (unit, output key, weight)
    tolerance: dict[str, float] = field(default_factory=dict)  # input label -> largest error it tolerates
    passthrough: dict[str, float] = field(default_factory=dict)  # input label -> factor its error reaches the output
    eps: float = EPS["float32"]  # the model dtype's machine epsilon
    float_error: float = 0.0  # bound on rounding in the output (large saturated pre-activations)
    relative: set[str] = field(default_factory=set)  # inputs whose tolerance is relative to their value
    noisy_gain: float = 0.0  # how much a noisy one-hot input's error grows on its way to the output
    strategy: str = ""

    @property
    def n_units(self) -> int:
        return len(self.b_in)

    def unit(self, w_in: dict, bias: float, w_out: dict) -> int:
        u = len(self.b_in)
        self.b_in.append(float(bias))
        self.w_in.extend((k, u, float(w)) for k, w in w_in.items() if w)
        self.w_out.extend((u, k, float(w)) for k, w in w_out.items() if w)
        return u

    def tolerate(self, label: str, tol: float) -> None:
        self.tolerance[label] = min(self.tolerance.get(label, math.inf), tol)

    def forward(self, x: dict[tuple, float]) -> dict[tuple, float]:
        """Evaluate the units on one residual vector given as {key: value} (float64, for checks)."""
        pre = np.array(self.b_in, dtype=np.float64)
        for k, u, w in self.w_in:
            pre[u] += w * x.get(k, 0.0)
        post = np.maximum(pre, 0.0)
        out: dict[tuple, float] = defaultdict(float)
        for u, k, w in self.w_out:
            out[k] += w * post[u]
        return dict(out)


# -- the three constructions ----------------------------------------------------------------------


def encode(node: Node, y: Any) -> dict[tuple, float]:
    """The residual vector of value ``y`` of ``node``: a one-hot key, the number, or nothing (None / 0)."""
    if node.is_numerical:
        return {num_key(node): float(y)} if y else {}
    return {} if y is None else {cat_key(node, y): 1.0}


def _diff(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) - v
    return {k: v for k, v in out.items() if v}


def _scaled(d: dict, c: float) -> dict:
    return {k: c * v for k, v in d.items()}


def gate(inputs: list[Node], rect: tuple, sets: list[ValueSet]) -> tuple[dict, float]:
    """The linear form that is 1 per input whose value lies in its side of the rectangle (0 otherwise):
    ``(weights, constant)``.  A side holding None (the zero vector) uses 1 - sum of the other values'
    entries, so "no value" can be matched too."""
    weights: dict[tuple, float] = {}
    const = 0.0
    for node, side, vset in zip(inputs, rect, sets):
        if None in side:
            const += 1.0
            for x in vset.non_none:
                if x not in side:
                    weights[cat_key(node, x)] = -1.0
        else:
            for x in side:
                weights[cat_key(node, x)] = 1.0
    return weights, const


def indicator_units(spec: MLPSpec, w_gate: dict, k: int, w_out: dict, noisy: bool, const: float = 0.0) -> None:
    """One unit equal to ``w_out`` where all ``k`` categorical gates hold (``w_gate . x + const`` = k), else 0.

    Exact inputs: ReLU(gates - (k - 1)).  Noisy inputs (one-hots off by e in total): the unit waits a
    margin delta, ReLU(gates - (k - 1) - delta) / (1 - delta), so a near miss (gates <= k - 1 + e) stays
    exactly 0 while e <= delta, and a hit is off by at most e / (1 - delta): the error passes on, scaled.
    """
    if not w_out:
        return
    bos = {BOS: -(2.0 * k + 2.0)}
    if k == 0:  # a constant: 1 everywhere but BOS
        spec.unit(bos, 1.0, w_out)
        return
    margin = MARGIN if noisy else 0.0
    w_out = _scaled(w_out, 1.0 / (1.0 - margin))
    spec.unit({**w_gate, **bos}, const - (k - 1.0) - margin, w_out)
    if noisy:  # an input error e reaches the output as at most e * |w_out|_1
        spec.noisy_gain = max(spec.noisy_gain, sum(abs(v) for v in w_out.values()))


def rectangles(points: set[tuple], k: int) -> list[tuple[frozenset, ...]]:
    """Cut a set of k-tuples into disjoint rectangles S_1 x ... x S_k that cover it exactly.

    Group the tuples by their first k-1 coordinates; prefixes with the same set of last coordinates
    share a rectangle in the last coordinate, and the prefixes are cut the same way, recursively.
    """
    if k == 1:
        return [(frozenset(p[0] for p in points),)] if points else []
    by_prefix: dict[tuple, set] = defaultdict(set)
    for p in points:
        by_prefix[p[:-1]].add(p[-1])
    by_slice: dict[frozenset, set] = defaultdict(set)
    for prefix, last in by_prefix.items():
        by_slice[frozenset(last)].add(prefix)
    rects = []
    for last, prefixes in by_slice.items():
        rects.extend(r + (last,) for r in rectangles(prefixes, k - 1))
    return rects


def best_rectangles(points: set[tuple], k: int) -> list[tuple[frozenset, ...]]:
    """``rectangles`` under each rotation of the coordinates; the fewest wins."""
    best = None
    for r in range(k if k > 1 else 1):
        rot = {p[r:] + p[:r] for p in points}
        rects = [rect[k - r:] + rect[:k - r] for rect in rectangles(rot, k)]
        if best is None or len(rects) < len(best):
            best = rects
    return best or []


def table(spec: MLPSpec, out: Node, inputs: list[Node], sets: list[ValueSet], fn: Callable, noisy: set[str]) -> None:
    """All-categorical inputs: one unit (pair) per rectangle of each output value's preimage."""
    domains = [s.values for s in sets]  # None too: a packed tuple may hold "no value"
    preimage: dict[Any, set] = defaultdict(set)
    for combo in itertools.product(*domains):
        try:
            y = fn(*combo)
        except Exception:
            continue  # a combination the interpreter rejects: the model may output anything there
        if encode(out, y):
            preimage[_hashable_key(y)].add(combo)
    k = len(inputs)
    is_noisy = any(i.label in noisy for i in inputs)
    for ykey, pts in preimage.items():
        w_out = encode(out, _unkey(ykey))
        for rect in best_rectangles(pts, k):
            weights, const = gate(inputs, rect, sets)
            indicator_units(spec, weights, k, w_out, is_noisy, const)
    for i in inputs:
        spec.tolerate(i.label, MARGIN / k if is_noisy else 0.0)
        if is_noisy:
            spec.passthrough[i.label] = spec.noisy_gain
    spec.strategy = "table"


def lookup(spec: MLPSpec, out: Node, s_node: Node, s_set: ValueSet, cats: list[Node], cat_sets: list[ValueSet],
           fn: Callable[[float, tuple], Any], noisy: set[str], bos_magnitude: float = 0.0) -> None:
    """One numerical input ``s`` (finite set) and categorical gates: a step function of s per gate rectangle.

    ``fn(s, cat_values)``; ``bos_magnitude``: the largest |s| at the BOS position (an uncleaned default).
    """
    S = [float(v) for v in s_set.non_none]
    if not S:
        raise RaspCompileError(s_node.label, "a numerical input with no values")
    domains = [c.values for c in cat_sets]  # None too (see ``gate``)
    k = len(cats)
    functions: dict[tuple, set] = defaultdict(set)
    for combo in itertools.product(*domains):
        g = []
        for s in S:
            try:
                g.append(_hashable_key(fn(s, combo)))
            except Exception:  # the interpreter rejects this input: no value (None, or 0 if numerical)
                g.append(_hashable_key(None))
        functions[tuple(g)].add(combo)
    s_abs = max(max(abs(v) for v in S), bos_magnitude)
    gate_noisy = any(c.label in noisy for c in cats)
    relative = getattr(s_node.op, "mode", None) == "width"  # 1/(w+1): its error is relative (see precision.py)
    s_tol, g_max = math.inf, 0.0
    lo, hi = S[0], S[-1]
    for g, combos in functions.items():
        rects = best_rectangles(combos, k) if k else [()]
        for rect in rects:
            gate_w, gate_c = gate(cats, rect, cat_sets)
            base = encode(out, _unkey(g[0]))
            err_right = [0.0] * len(S)  # float32 error of the steps saturated at s = S[i], by side
            err_left = [0.0] * len(S)
            for j in range(len(S) - 1):
                if g[j + 1] == g[j]:
                    continue
                gap = S[j + 1] - S[j]
                # kappa a power of two and t a float32 number: the weights and biases below are then
                # exactly representable, and only the rounding of the input and of u itself remains
                kappa = 2.0 ** math.ceil(math.log2(4.0 / gap))
                t = float(np.float32((S[j] + S[j + 1]) / 2.0))
                delta = _diff(encode(out, _unkey(g[j + 1])), encode(out, _unkey(g[j])))
                # A step saturates on one side, where its pre-activation grows with the distance to t; orient
                # it towards the nearer end of the value range:  + delta [s > t]  or  - delta [s < t]
                # (then the base absorbs + delta).
                if t - lo < hi - t:
                    sign, extent, step_delta = -1.0, t - lo, _scaled(delta, -1.0)
                    base = _diff(base, step_delta)
                else:
                    sign, extent, step_delta = 1.0, hi - t, delta
                gate_big = 2.0 ** math.ceil(math.log2((kappa * extent + 2.0) / (1.0 - CAT_TOLERANCE)))
                bos_big = kappa * (s_abs + abs(t)) + gate_big * k + 2.0  # nothing fires at BOS
                if gate_big * (k + 2) * spec.eps > 0.05:  # rounding would blur the step
                    raise RaspCompileError(
                        spec.op, f"input {s_node.label} has values {S[j]!r} and {S[j + 1]!r}, too close together for "
                                 f"the model's precision at magnitude {s_abs:.3g} (a step between them needs "
                                 f"pre-activations of ~{gate_big * (k + 2):.2g}); use coarser values or a smaller max_len",
                        float_limited=True)
                w = {num_key(s_node): sign * kappa, BOS: -bos_big, **_scaled(gate_w, gate_big)}
                centre = -sign * kappa * t + gate_big * (gate_c - k)
                spec.unit(w, centre + 0.5, step_delta)
                spec.unit(w, centre - 0.5, _scaled(step_delta, -1.0))
                tol = gap / 4.0
                if relative:
                    tol /= max(abs(S[j]), abs(S[j + 1]))
                s_tol = min(s_tol, tol)
                g_max = max(g_max, gate_big)
                # float32: a saturated pair computes (u + 1/2) - (u - 1/2) with |u| <= kappa * extent
                exact_bias = all(float(np.float32(b)) == b for b in (centre + 0.5, centre - 0.5))
                magnitude = kappa * extent + 1.0 + (0.0 if exact_bias else abs(centre))
                err = spec.eps * magnitude * sum(abs(v) for v in delta.values())
                (err_right if sign > 0 else err_left)[j] = err
            indicator_units(spec, gate_w, k, {key: v for key, v in base.items() if v}, gate_noisy, gate_c)
            right = np.concatenate([[0.0], np.cumsum(err_right[:-1])])  # steps j < i saturate at S[i]
            left = np.cumsum(err_left[::-1])[::-1]  # steps j >= i
            spec.float_error = max(spec.float_error, float(np.max(right + left)))
    if relative:
        spec.relative.add(s_node.label)
    spec.tolerate(s_node.label, s_tol)
    for c in cats:
        tol = min(MARGIN / max(k, 1), 0.25 / g_max if g_max else math.inf) if gate_noisy else 0.0
        spec.tolerate(c.label, tol)
        if gate_noisy:  # the base unit passes a noisy gate's error on (see indicator_units)
            spec.passthrough[c.label] = spec.noisy_gain
    spec.strategy = "lookup"


def additive(spec: MLPSpec, out: Node, inputs: list[Node], sets: list[ValueSet], parts: list, const: float,
             noisy: set[str], bos_magnitude: dict[str, float]) -> None:
    """out = const + sum_i parts[i](x_i): ``parts[i]`` is a function of one value, or ("linear", a)."""
    if const:
        indicator_units(spec, {}, 0, {num_key(out): const}, False)
    for node, vset, part in zip(inputs, sets, parts):
        if isinstance(part, tuple) and part[0] == "linear":
            a = part[1]
            big = bos_magnitude.get(node.label, 0.0) + 1.0
            spec.unit({num_key(node): 1.0, BOS: -big}, 0.0, {num_key(out): a})
            spec.unit({num_key(node): -1.0, BOS: -big}, 0.0, {num_key(out): -a})
            spec.passthrough[node.label] = abs(a)
            spec.tolerate(node.label, math.inf)
        elif node.is_numerical:
            lookup(spec, out, node, vset, [], [], lambda s, _c, part=part: part(s), noisy,
                   bos_magnitude.get(node.label, 0.0))
        else:
            table(spec, out, [node], [vset], part, noisy)
    spec.strategy = "additive"


def _hashable_key(y: Any):
    return (value_key(y), y)  # compares by the key (True is not 1), keeps the value


def _unkey(k):
    return k[1]


# -- checks ---------------------------------------------------------------------------------------


def check_exact(spec: MLPSpec, out: Node, inputs: list[Node], sets: list[ValueSet], fn: Callable,
                rng: np.random.Generator, n_samples: int = 256) -> None:
    """Run the units (float32) on sampled input combinations, also pushed to the edge of the tolerance,
    and compare with ``fn``: a guard against construction bugs, raising RaspCompileError on a mismatch."""
    domains = [(s.non_none if node.is_numerical else s.values) if s.finite else None for node, s in zip(inputs, sets)]
    if any(d is None for d in domains):
        return
    n_samples = max(32, min(n_samples, 100_000 // max(spec.n_units, 1)))  # bounded work for big MLPs
    total = combinations_count([ValueSet(d) for d in domains])
    if total <= n_samples:
        combos = list(itertools.product(*domains))
    else:
        combos = [tuple(d[rng.integers(len(d))] for d in domains) for _ in range(n_samples)]
    cases, wants = [], []
    for combo in combos:
        try:
            want = encode(out, fn(*combo))
        except Exception:
            continue
        for push in (0.0, 1.0, -1.0):
            x: dict[tuple, float] = {}
            for node, v in zip(inputs, combo):
                tol = spec.tolerance.get(node.label, 0.0)
                tol = 0.0 if math.isinf(tol) else 0.9 * tol
                if node.is_numerical:
                    scale = abs(float(v)) if node.label in spec.relative else 1.0
                    x[num_key(node)] = float(v) + push * tol * scale
                elif v is not None:
                    x[cat_key(node, v)] = 1.0 - abs(push) * tol / max(len(inputs), 1)
            cases.append((combo, x))
            wants.append(want)
    if not cases:
        return
    in_keys = sorted({k for k, _, _ in spec.w_in} | {BOS}, key=repr)
    out_keys = sorted({k for _, k, _ in spec.w_out} | {k for w in wants for k in w}, key=repr)
    i_ix, o_ix = {k: i for i, k in enumerate(in_keys)}, {k: i for i, k in enumerate(out_keys)}
    W_in = np.zeros((len(in_keys), spec.n_units), dtype=np.float32)  # [keys, units]
    W_out = np.zeros((spec.n_units, len(out_keys)), dtype=np.float32)  # [units, out keys]
    np.add.at(W_in, ([i_ix[k] for k, _, _ in spec.w_in], [u for _, u, _ in spec.w_in]), [w for _, _, w in spec.w_in])
    np.add.at(W_out, ([u for u, _, _ in spec.w_out], [o_ix[k] for _, k, _ in spec.w_out]), [w for _, _, w in spec.w_out])
    X = np.zeros((len(cases), len(in_keys)), dtype=np.float32)  # [cases, keys]
    Y = np.zeros((len(cases), len(out_keys)), dtype=np.float32)
    for r, ((_, x), want) in enumerate(zip(cases, wants)):
        for k, v in x.items():
            if k in i_ix:
                X[r, i_ix[k]] = v
        for k, v in want.items():
            Y[r, o_ix[k]] = v
    if spec.eps < EPS["float32"]:
        X, W_in, W_out = X.astype(np.float64), W_in.astype(np.float64), W_out.astype(np.float64)
    got = np.maximum(X @ W_in + np.asarray(spec.b_in, dtype=X.dtype), 0.0) @ W_out  # [cases, out keys]
    passed_on = sum(a * 0.9 * spec.tolerance.get(label, 0.0) for label, a in spec.passthrough.items()
                    if not math.isinf(spec.tolerance.get(label, 0.0)))
    slack = 1e-4 * np.maximum(1.0, np.abs(Y)) + 2.0 * spec.float_error + passed_on * np.ones_like(Y)
    bad = np.abs(got - Y) > slack
    if bad.any():
        r = int(np.argwhere(bad)[0][0])
        raise RaspCompileError(spec.op, f"internal check failed: the MLP is not exact on input {cases[r][0]} "
                                        f"(pushed to {cases[r][1]})")

