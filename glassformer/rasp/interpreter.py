"""The RASP interpreter: ``evaluate(program, input)`` runs a program directly, with no model.

It is the reference the compiler is tested against, so its rules are spelled out once, here:

* ``Select(keys, queries, p)[q][k] = p(keys[k], queries[q])``; a None key or query is never selected
  (except by TRUE), and ``~`` negates the comparison rather than the matrix (three-valued logic).
* a categorical ``Aggregate`` returns the one value all selected positions share (an error naming the
  operation if they differ), ``default`` where none is selected;
* a numerical ``Aggregate`` returns the mean ``fsum(selected values) / count`` (``default`` if none);
* ``Map`` / ``SequenceMap`` skip None inputs: the result is None (categorical) or 0 (numerical).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from glassformer.rasp import language as L
from glassformer.rasp.errors import RaspEvaluationError, RaspProgramError

Matrix = list[list[bool]]  # [query][key]


def evaluate(program: L.RASPExpr, input: Sequence | str) -> list | Matrix:
    """Run ``program`` on ``input`` (a sequence of tokens; a string is its characters).

    Returns one value per position for a SOp, the boolean matrix ``[query][key]`` for a Selector.
    """
    if not isinstance(program, L.RASPExpr):
        raise RaspProgramError(f"evaluate() needs a RASP expression (a SOp or Selector), got {type(program).__name__}")
    if isinstance(input, (bytes, dict, set)) or not hasattr(input, "__len__"):
        raise RaspEvaluationError(f"the input must be a sequence of tokens (a list or a string), got {type(input).__name__}")
    return Interpreter(list(input)).run(program)


class Interpreter:
    """Evaluates expressions on one input, memoising every node by id."""

    def __init__(self, xs: list):
        self.xs = xs
        self.n = len(xs)
        self.memo: dict[tuple[int, bool], Any] = {}

    def run(self, expr: L.RASPExpr):
        for node in L.walk(expr):  # children first, so recursion stays shallow
            self.value(node)
        return self.value(expr)

    def value(self, expr: L.RASPExpr, negate: bool = False):
        key = (expr.id, negate)
        if key not in self.memo:
            if isinstance(expr, L.Selector):
                self.memo[key] = self._selector(expr, negate)
            else:
                self.memo[key] = self._sop(expr)
        return self.memo[key]

    # -- SOps -------------------------------------------------------------------------------------

    def _sop(self, expr: L.SOp) -> list:
        n = self.n
        derived = L.expansion(expr)
        if derived is not None:  # a derived primitive: its definition in other primitives
            return self.run(derived)
        if isinstance(expr, L.Tokens):
            out = list(self.xs)
        elif isinstance(expr, L.Indices):
            out = list(range(n))
        elif isinstance(expr, L.Full):
            out = [expr.value] * n
        elif isinstance(expr, L.Map):
            xs = self.value(expr.inner)
            out = [self._apply(expr, i, (x,)) for i, x in enumerate(xs)]
        elif isinstance(expr, L.SequenceMap):
            xs, ys = self.value(expr.fst), self.value(expr.snd)
            out = [self._apply(expr, i, (x, y)) for i, (x, y) in enumerate(zip(xs, ys))]
        elif isinstance(expr, L.Aggregate):
            out = self._aggregate(expr)
        elif isinstance(expr, L.SelectorWidth):
            out = [sum(row) for row in self.value(expr.selector)]
        elif isinstance(expr, L.Maximum):
            out = self._extreme(expr)
        else:
            raise RaspProgramError(f"{type(expr).__name__} {expr.name}: not a RASP operation the interpreter knows")
        if expr.is_numerical:
            out = [self._number(expr, i, v) for i, v in enumerate(out)]
        return out

    def _apply(self, expr, i: int, args: tuple):
        if any(a is None for a in args):
            return 0 if expr.is_numerical else None
        try:
            return expr.f(*args)
        except Exception as e:
            shown = args[0] if len(args) == 1 else args
            raise RaspEvaluationError(
                f"{type(expr).__name__} {expr.name}: its function raised {type(e).__name__}: {e} on input {shown!r} "
                f"at position {i}"
            ) from e

    @staticmethod
    def _number(expr, i: int, v):
        if isinstance(v, bool):
            return int(v)
        if not L.is_number(v):
            raise RaspEvaluationError(
                f"{type(expr).__name__} {expr.name} is numerical but produced {v!r} at position {i}; "
                "numerical SOps hold finite numbers (make it categorical to hold labels)"
            )
        return v

    def _aggregate(self, expr: L.Aggregate) -> list:
        matrix = self.value(expr.selector)
        values = self.value(expr.sop)
        out = []
        for q, row in enumerate(matrix):
            selected = [values[k] for k, s in enumerate(row) if s]
            if not selected:
                out.append(expr.default)
            elif expr.is_numerical:
                out.append(math.fsum(selected) / len(selected))
            else:
                first = selected[0]
                if any(not _same(v, first) for v in selected[1:]):
                    distinct = sorted({repr(v) for v in selected})
                    raise RaspEvaluationError(
                        f"Aggregate {expr.name}: at query position {q} the selected positions hold different "
                        f"values ({', '.join(distinct)}); a categorical aggregate needs them all equal "
                        "(make the value numerical to average it)"
                    )
                out.append(first)
        return out

    def _extreme(self, expr: L.Maximum) -> list:
        matrix = self.value(expr.selector)
        values = self.value(expr.sop)
        out = []
        for q, row in enumerate(matrix):
            selected = [values[k] for k, s in enumerate(row) if s and values[k] is not None]
            if not selected:
                out.append(expr.default)
                continue
            try:
                out.append(expr.reduce(selected))
            except TypeError as e:
                raise RaspEvaluationError(f"{type(expr).__name__} {expr.name}: values at query position {q} "
                                          f"cannot be ordered: {e}") from e
        return out

    # -- selectors --------------------------------------------------------------------------------

    def _selector(self, expr: L.Selector, negate: bool) -> Matrix:
        if isinstance(expr, L.Select):
            return self._select(expr, negate)
        if isinstance(expr, L.SelectorNot):
            return self.value(expr.inner, not negate)
        if isinstance(expr, (L.SelectorAnd, L.SelectorOr)):
            a, b = self.value(expr.fst, negate), self.value(expr.snd, negate)
            conjunction = isinstance(expr, L.SelectorAnd) != negate  # De Morgan: ~(a & b) = ~a | ~b
            if conjunction:
                return [[x and y for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]
            return [[x or y for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]
        raise RaspProgramError(f"{type(expr).__name__} {expr.name}: not a selector the interpreter knows")

    def _select(self, expr: L.Select, negate: bool) -> Matrix:
        keys, queries = self.value(expr.keys), self.value(expr.queries)
        predicate = expr.predicate
        if predicate in L.CONSTANT_PREDICATES:
            selected = (predicate is L.TRUE) != negate
            return [[selected] * self.n for _ in range(self.n)]
        matrix = []
        for q, query in enumerate(queries):
            row = []
            for k, key in enumerate(keys):
                if key is None or query is None:
                    row.append(False)
                    continue
                try:
                    result = predicate(key, query)
                except Exception as e:
                    raise RaspEvaluationError(
                        f"Select {expr.name}: predicate {predicate.name} raised {type(e).__name__}: {e} on "
                        f"key {key!r} (position {k}), query {query!r} (position {q})"
                    ) from e
                row.append(result != negate)
            matrix.append(row)
        return matrix


def _same(a: Any, b: Any) -> bool:
    """Equal as RASP values: ``True`` is not ``1`` (nor ``False`` ``0``), inside tuples too."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return (a is None) == (b is None) and isinstance(a, bool) == isinstance(b, bool) and a == b
