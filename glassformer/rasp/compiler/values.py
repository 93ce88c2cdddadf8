"""Stage 2: value sets.  Which values can each node take, given the vocabulary and the maximum length?

The compiler sizes everything from these sets: one residual dimension per categorical value, one
lookup-table entry per input combination, the attention sharpness from the gaps between numbers.
Sets are supersets of what really occurs (an Aggregate may return its default even if no input
makes it do so), which costs size, never correctness.

* tokens: the vocabulary; indices: 0..N-1; a constant: itself;
* ElementWise: ``f`` over every combination of input values (a combination on which ``f`` raises is
  one the interpreter would reject too, so it is left out);
* copy / max / min: the value's set plus the default; width: {1/(w+1) : w = 0..N};
* mean: every mean of 1..N values drawn from the value's set, computed exactly (integer sums on a
  common denominator) and rounded as the interpreter rounds ``fsum(values) / count``.

A numerical set too large to list keeps only its bounds (``values is None``); a later stage raises
:class:`~glassformer.rasp.errors.RaspCompileError` if it needs the list.

Two rules keep the sets honest:

* ``True`` and ``1`` (``False`` and ``0``) are different values, although Python's ``==`` and ``hash``
  equate them: every set and residual key goes through :func:`value_key`, which tells them apart.
* **Float twins** -- numbers that differ only by float rounding, such as -0.6666666666666667 and
  -0.6666666666666666 from two ways of computing 1/3 - 1 -- are one value: the set keeps the first as
  its representative and remembers the others in ``twins`` (within ``TWIN_TOLERANCE``, relative).  No
  model can separate them (float64 resolves 1e-16), so the compiled model answers the representative;
  every function and predicate is checked to treat the twins alike, else ``RaspCompileError``
  (``float_limited=True``) names it.  :func:`same_value` is equality up to twins.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from glassformer.rasp import language as L
from glassformer.rasp.compiler.graph import Attend, ElementWise, Embedded, Graph, Node
from glassformer.rasp.errors import RaspCompileError

TABLE_LIMIT = 50_000  # most input combinations one ElementWise may enumerate
TWIN_TOLERANCE = 1e-12  # numbers closer than this (relative to max(1, |a|, |b|)) are one value


class _Bool:
    """A bool as a dictionary key that is not equal to the int 1 or 0 (``True == 1`` in Python)."""

    __slots__ = ("value",)

    def __init__(self, value: bool):
        self.value = value

    def __eq__(self, other) -> bool:
        return isinstance(other, _Bool) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("bool", self.value))

    def __repr__(self) -> str:
        return repr(self.value)


def value_key(v: Any):
    """``v`` as a key that keeps bools apart from ints, inside tuples too."""
    if isinstance(v, bool):
        return _Bool(v)
    if isinstance(v, tuple):
        return tuple(value_key(x) for x in v)
    return v


def twins(a: Any, b: Any) -> bool:
    """Whether two numbers differ only by float rounding (and are not the same): at least one is a
    float, and they agree to ``TWIN_TOLERANCE`` relatively.  Ints are never twins of each other."""
    if not (isinstance(a, float) or isinstance(b, float)) or not (L.is_number(a) and L.is_number(b)):
        return False
    if isinstance(a, bool) or isinstance(b, bool) or a == b:
        return False
    a, b = float(a), float(b)
    return abs(a - b) <= TWIN_TOLERANCE * max(1.0, abs(a), abs(b))


def same_value(a: Any, b: Any) -> bool:
    """Equality as the compiler sees it: ``True`` is not ``1``, float twins are equal; element-wise in
    tuples and lists (a program's output)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return value_key(a) == value_key(b) or twins(a, b)
LINEAR_LIMIT = 2_000_000  # most input combinations an affine ElementWise (x - y) may enumerate
MEAN_LIMIT = 400_000  # most (sum, count) pairs a mean's value set may enumerate


@dataclass(frozen=True)
class ValueSet:
    """The values a node can take: ``values`` sorted (None first), or None when only bounds are known."""

    values: tuple | None
    lo: float | None = None  # numerical bounds
    hi: float | None = None
    twins: tuple = ()  # (representative, twin) pairs: numbers merged into a value of ``values``

    @property
    def finite(self) -> bool:
        return self.values is not None

    def __len__(self) -> int:
        if self.values is None:
            raise TypeError("value set is not finite")
        return len(self.values)

    @property
    def non_none(self) -> tuple:
        return tuple(v for v in self.values if v is not None)

    @property
    def magnitude(self) -> float:
        """max |v| (numerical sets)."""
        return max(abs(self.lo or 0.0), abs(self.hi or 0.0))

    @property
    def all_values(self) -> tuple:
        """The values and their twins: every value the interpreter may produce."""
        return self.values + tuple(t for _, t in self.twins)

    @functools.cached_property
    def _reps(self) -> dict:
        return {value_key(t): rep for rep, t in self.twins}

    def representative(self, v: Any) -> Any:
        """The value of ``values`` that ``v`` is (``v`` itself, or its twin's representative)."""
        if not self.twins:
            return v
        return self._reps.get(value_key(v), v)

    @staticmethod
    def of(values, numerical: bool = False) -> ValueSet:
        vals = sort_values(_dedupe(values))
        vals, pairs = _merge_twins(vals)
        if numerical:
            nums = [float(v) for v in vals if v is not None]
            return ValueSet(tuple(vals), min(nums, default=0.0), max(nums, default=0.0), pairs)
        return ValueSet(tuple(vals), twins=pairs)


def _merge_twins(vals: list) -> tuple[list, tuple]:
    """Sorted values with each run of float twins reduced to its first; the pairs merged away."""
    out, pairs = [], []
    for v in vals:
        rep = out[-1] if out else None
        if out and twins(rep, v):
            pairs.append((rep, v))
        else:
            out.append(v)
    return out, tuple(pairs)


def _dedupe(values) -> list:
    """Distinct values by :func:`value_key` (True and 1 stay apart), first occurrence kept."""
    out: dict = {}
    unhashable = []
    for v in values:
        try:
            out.setdefault(value_key(v), v)
        except TypeError:
            if not any(v == u for u in unhashable):
                unhashable.append(v)
    return list(out.values()) + unhashable


def sort_key(v: Any):
    """A total order over mixed values: None, then numbers, then strings, then tuples, then the rest."""
    if v is None:
        return (0,)
    if isinstance(v, (bool, int, float)) and not isinstance(v, complex):
        return (1, float(v))
    if isinstance(v, str):
        return (2, v)
    if isinstance(v, tuple):
        return (3, tuple(sort_key(x) for x in v))
    return (4, type(v).__name__, repr(v))


def sort_values(values) -> list:
    """None first, then the values in their natural order (mixed types: by ``sort_key``)."""
    values = list(values)
    rest = [v for v in values if v is not None]
    nones = [None] * (len(values) - len(rest))
    try:
        return nones + sorted(rest)
    except TypeError:
        return nones + sorted(rest, key=sort_key)


def combinations_count(sets: list[ValueSet]) -> int:
    return math.prod(len(s) for s in sets)


def infer_values(graph: Graph, vocab: list, max_len: int) -> dict[str, ValueSet]:
    """Value sets of every node of ``graph``, by label."""
    out: dict[str, ValueSet] = {}
    for node in graph.nodes:
        out[node.label] = node_values(node, out, vocab, max_len)
    return out


def node_values(node: Node, known: dict[str, ValueSet], vocab: list, max_len: int) -> ValueSet:
    numerical = node.is_numerical
    if node.values_hint is not None:
        return ValueSet.of(node.values_hint, numerical)
    op = node.op
    if isinstance(op, Embedded):
        if op.kind == "tokens":
            if numerical and not all(L.is_number(v) for v in vocab):
                raise RaspCompileError(node.label, "numerical tokens need a vocabulary of numbers")
            return ValueSet.of(vocab, numerical)
        if op.kind == "indices":
            return ValueSet.of(range(max_len), numerical)
        if not numerical:
            check_categorical(op.value, node.origin or node.label, f"the constant {op.value!r}")
        return ValueSet.of([op.value], numerical)
    if isinstance(op, ElementWise):
        return _elementwise_values(node, [known[a.label] for a in op.args])
    if isinstance(op, Attend):
        return _attend_values(node, known, max_len)
    raise RaspCompileError(node.label, f"unknown node kind {type(op).__name__}")


def _elementwise_values(node: Node, sets: list[ValueSet]) -> ValueSet:
    op: ElementWise = node.op
    limit = TABLE_LIMIT if len(sets) > 1 or not node.inputs[0].is_numerical else LINEAR_LIMIT
    if all(s.finite for s in sets) and combinations_count(sets) <= limit:  # a step function of one number
        results = []
        at_reps: dict[tuple, Any] = {}  # kept only when twins need checking against it
        keep = any(s.twins for s in sets)
        errors: list[str] = []
        succeeded = False  # on a combination without None (RASP's None rule does not call fn on None)
        for idx in itertools.product(*(range(len(s.values)) for s in sets)):
            combo = tuple(s.values[i] for s, i in zip(sets, idx))
            y = _apply(node, combo, errors)
            if y is not _REJECTED:
                results.append(y)
                succeeded = succeeded or all(x is not None for x in combo)
                if keep:
                    at_reps[idx] = y
        if errors and not succeeded:
            raise RaspCompileError(node.origin or node.label, f"its function fails on every value its inputs can "
                                                              f"take ({errors[0]}); the interpreter rejects every input")
        if errors:  # where the interpreter raises, the MLP writes no value: None (0 if numerical)
            results.append(0 if node.is_numerical else None)
        if keep:
            results += _twin_results(node, sets, at_reps)
        return ValueSet.of(results, node.is_numerical)
    if node.is_numerical and op.linear is not None and all(s.finite for s in sets) \
            and combinations_count(sets) <= LINEAR_LIMIT:  # an affine map: every sum, vectorised
        c0, *coefs = op.linear
        total = np.full(1, float(c0))
        for a, s in zip(coefs, sets):
            xs = np.array([float(v) for v in s.all_values if v is not None] or [0.0])
            total = np.unique((total[:, None] + a * xs[None, :]).ravel())
        return ValueSet.of(total.tolist(), True)
    if node.is_numerical and op.linear is not None and all(s.lo is not None for s in sets):
        c0, *coefs = op.linear
        lo = c0 + sum(min(a * s.lo, a * s.hi) for a, s in zip(coefs, sets))
        hi = c0 + sum(max(a * s.lo, a * s.hi) for a, s in zip(coefs, sets))
        return ValueSet(None, lo, hi)
    if node.is_numerical:
        return ValueSet(None, None, None)
    sizes = " x ".join(str(len(s)) if s.finite else "unbounded" for s in sets)
    raise RaspCompileError(
        node.origin or node.label,
        f"its inputs have {sizes} value combinations, more than the {TABLE_LIMIT} a lookup table may enumerate; "
        "use a smaller vocabulary or max_len, or split the function",
    )


_REJECTED = object()  # a combination the function raises on (the interpreter raises there too)


def _apply(node: Node, combo: tuple, errors: list | None = None):
    """``fn(*combo)``, or _REJECTED where the interpreter rejects it (the reason goes to ``errors``).
    A categorical value the model cannot hold (unhashable, NaN) is refused outright."""
    try:
        y = node.op.fn(*combo)
    except Exception as e:  # the user's function raised: the interpreter raises on this input too
        if errors is not None and not errors:
            errors.append(f"{type(e).__name__}: {e} on {_show(combo)}")
        return _REJECTED
    if node.is_numerical:
        if isinstance(y, bool):
            y = int(y)
        if not L.is_number(y):
            if errors is not None and not errors:
                errors.append(f"it returned {y!r} on {_show(combo)}, not a finite number")
            return _REJECTED
        return y
    check_categorical(y, node.origin or node.label, f"its function returned {y!r} on {_show(combo)}")
    return y


def check_categorical(y: Any, op: str, what: str) -> None:
    """Refuse a categorical value no model can hold: unhashable (a list), or NaN (equal to nothing)."""
    try:
        hash(y)
    except TypeError:
        raise RaspCompileError(op, f"{what}, a {type(y).__name__}: categorical values must be hashable "
                                   "(a tuple instead of a list)") from None
    if isinstance(y, float) and math.isnan(y):
        raise RaspCompileError(op, f"{what}: NaN cannot be a categorical value (it equals nothing, not even itself)")
    if isinstance(y, tuple):
        for x in y:
            check_categorical(x, op, what)


def _twin_results(node: Node, sets: list[ValueSet], at_reps: dict[tuple, Any]) -> list:
    """The results on combinations holding a float twin; each must equal the result on the
    representatives (the model computes that one), else the node cannot be compiled."""
    choices = []
    for s in sets:
        index = {value_key(v): i for i, v in enumerate(s.values)}
        choices.append([(i, v, False) for i, v in enumerate(s.values)]
                       + [(index[value_key(rep)], t, True) for rep, t in s.twins])
    out = []
    for choice in itertools.product(*choices):
        if not any(c[2] for c in choice):
            continue
        combo = tuple(c[1] for c in choice)
        y = _apply(node, combo)
        idx = tuple(c[0] for c in choice)
        if y is _REJECTED or idx not in at_reps:
            continue
        if not same_value(at_reps[idx], y):
            reps = tuple(s.values[i] for s, i in zip(sets, idx))
            raise RaspCompileError(
                node.origin or node.label,
                f"it maps {_show(reps)} to {at_reps[idx]!r} but {_show(combo)} to {y!r}, and these inputs differ "
                "only by float rounding (no model can tell them apart); round the values in an earlier Map",
                float_limited=True)
        out.append(y)
    return out


def _show(combo: tuple) -> str:
    return repr(combo[0]) if len(combo) == 1 else repr(combo)


def _attend_values(node: Node, known: dict[str, ValueSet], max_len: int) -> ValueSet:
    op: Attend = node.op
    if op.mode == "width":
        return ValueSet.of([1.0 / (w + 1) for w in range(max_len + 1)], True)
    inner = known[op.value.label]
    if not node.is_numerical:
        check_categorical(op.default, node.origin or node.label, f"the default {op.default!r}")
    if op.mode == "mean":
        return mean_values(inner, max_len, op.default)
    if not inner.finite:
        bounds = [b for b in (inner.lo, inner.hi, op.default) if b is not None]
        return ValueSet(None, min(bounds), max(bounds)) if len(bounds) >= 2 else ValueSet(None)
    values = list(inner.all_values)
    if op.mode in ("max", "min"):
        values.append(op.default)
        if node.is_numerical:
            values = [v for v in values if v is not None]
    else:
        values.append(op.default)
    return ValueSet.of(values, node.is_numerical)


def mean_values(inner: ValueSet, max_len: int, default: float) -> ValueSet:
    """All values of fsum(x_1..x_w) / w for 1 <= w <= max_len and x_i in ``inner``, plus ``default``."""
    if not inner.finite or not inner.values:
        lo = min(v for v in (inner.lo, default) if v is not None)
        hi = max(v for v in (inner.hi, default) if v is not None)
        return ValueSet(None, lo, hi)
    fracs = [Fraction(v) for v in inner.values]
    denom = math.lcm(*(f.denominator for f in fracs))
    ints = sorted({int(f * denom) for f in fracs})
    base = ints[0]
    span = ints[-1] - base
    if denom > 1 << 20 or span * max_len > 1 << 40 or abs(base) * max_len > 1 << 50:
        return _means_by_multisets(fracs, max_len, default)
    offsets = [i - base for i in ints]
    step = 0
    for o in offsets:
        step = math.gcd(step, o)
    step = step or 1
    offsets = [o // step for o in offsets]
    one = 0
    for o in offsets:
        one |= 1 << o
    total = 0
    sums = 1  # bitset of reachable offset sums with w terms; w = 0: {0}
    chunks = []
    for w in range(1, max_len + 1):
        nxt = 0
        for o in offsets:
            nxt |= sums << o
        sums = nxt
        bits = _bits(sums)
        total += len(bits)
        if total > MEAN_LIMIT:
            return ValueSet(None, float(fracs[0]), float(fracs[-1]))
        numerators = w * base + bits * step  # exact sums, times denom: int64-safe by the checks above
        chunks.append(numerators.astype(np.float64) / denom / w if denom > 1 else numerators.astype(np.float64) / w)
    means = np.unique(np.concatenate(chunks))
    values = [float(v) for v in means] + [default]
    return ValueSet.of(values, True)


def _means_by_multisets(fracs: list[Fraction], max_len: int, default: float) -> ValueSet:
    """The same set when the values share no short denominator (e.g. means of means, stored as binary
    floats): the exact sums of every multiset, level by level, if there are not too many."""
    lo = float(min(fracs + [Fraction(default)]))
    hi = float(max(fracs + [Fraction(default)]))
    m = len(fracs)
    if sum(math.comb(m + w - 1, w) for w in range(1, max_len + 1)) > MEAN_LIMIT // 4:
        return ValueSet(None, lo, hi)
    values = {default}
    sums = {Fraction(0)}
    for w in range(1, max_len + 1):
        sums = {s + f for s in sums for f in fracs}
        values.update(float(s) / w for s in sums)  # fsum rounds the exact sum once, then / w
    return ValueSet.of(values, True)


def _bits(x: int) -> np.ndarray:
    """Positions of the set bits of a non-negative int, as int64."""
    raw = np.frombuffer(x.to_bytes((x.bit_length() + 7) // 8 or 1, "little"), dtype=np.uint8)
    return np.flatnonzero(np.unpackbits(raw, bitorder="little")).astype(np.int64)
