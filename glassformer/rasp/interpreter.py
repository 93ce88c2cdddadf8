"""The RASP interpreter: ``evaluate(program, input)`` runs a program directly, with no model.

It is the reference the compiler is tested against.  Each primitive's rule is its class's ``evaluate``
(``language.py``, ``selectors.py``: one home per primitive); this module walks the program, memoises
values, applies the None rule and checks numerical values.  The rules:

* ``Select(keys, queries, p)[q][k] = p(keys[k], queries[q])``; a None key or query is never selected
  (except by TRUE), and ``~`` negates the comparison rather than the matrix (three-valued logic).
* a categorical ``Aggregate`` returns the one value all selected positions share (an error naming the
  operation if they differ), ``default`` where none is selected;
* a numerical ``Aggregate`` returns the mean ``fsum(selected values) / count`` (``default`` if none);
* ``Map`` / ``SequenceMap`` skip None inputs: the result is None (categorical) or 0 (numerical).
"""

from __future__ import annotations

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
        """``expr``'s values on this input (a selector's matrix, negated if asked), computed once."""
        key = (expr.id, negate)
        if key not in self.memo:
            if isinstance(expr, L.Selector):
                self.memo[key] = expr.evaluate(self, negate)
            else:
                self.memo[key] = self._sop(expr)
        return self.memo[key]

    def _sop(self, expr: L.SOp) -> list:
        derived = L.expansion(expr)
        if derived is not None:  # a derived primitive: its definition in other primitives
            return self.run(derived)
        if not isinstance(expr, L.SOp):
            raise RaspProgramError(f"{type(expr).__name__} {expr.name}: not a RASP operation the interpreter knows")
        out = expr.evaluate(self)  # each primitive's semantics live in its class (language.py, selectors.py)
        if expr.is_numerical:
            out = [self._number(expr, i, v) for i, v in enumerate(out)]
        return out

    def apply(self, expr, i: int, args: tuple):
        """``expr.f(*args)`` at position ``i``, under RASP's None rule: a None input gives None (0 if numerical)."""
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
