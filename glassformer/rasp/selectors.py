"""RASP selectors: boolean matrices S[query, key], what an attention pattern computes (``language.py``
re-exports them).  Each class is its primitive's one home: ``evaluate`` (the interpreter's semantics),
``formula`` (what the compiler's graph stage lowers) and ``to_code`` (how it prints)."""

from __future__ import annotations

from typing import Any, Callable

from glassformer.rasp.checks import _check_callable, _check_selector, _check_sop
from glassformer.rasp.errors import RaspCompileError, RaspEvaluationError, RaspProgramError
from glassformer.rasp.expr import RASPExpr
from glassformer.rasp.predicates import COMPARISONS, CONSTANT_PREDICATES, TRUE, Predicate


class Selector(RASPExpr):
    """A boolean matrix S[query, key]; combine with ``&``, ``|`` and ``~``."""

    kind = "selector"

    def __and__(self, other: Selector) -> Selector:
        return SelectorAnd(self, other)

    def __or__(self, other: Selector) -> Selector:
        return SelectorOr(self, other)

    def __invert__(self) -> Selector:
        return SelectorNot(self)

    def evaluate(self, run, negate: bool = False) -> list[list[bool]]:
        """The matrix [query][key] on ``run``'s input (negated: RASP's three-valued negation, see SelectorNot)."""
        raise RaspProgramError(f"{type(self).__name__} {self.name}: not a selector the interpreter knows")

    def formula(self, negate: bool = False) -> tuple:
        """For the compiler: ("leaf", select, negate) | ("and" | "or", [formulas]) | ("const", bool), with the
        negations pushed down to the Select leaves."""
        raise RaspCompileError(self.name, f"{type(self).__name__} is not a selector the compiler knows")

    def to_code(self) -> str:
        return f"{type(self).__name__}({', '.join(c.name for c in self.children)})"


class Select(Selector):
    """``Select(keys, queries, predicate)[q, k] = predicate(keys[k], queries[q])``.

    ``predicate`` is one of EQ, NE, LT, LEQ, GT, GEQ, TRUE, FALSE or any function ``(key, query) -> bool``.
    """

    kind = "select"
    _child_attrs = ("keys", "queries")

    def __init__(self, keys: SOp, queries: SOp, predicate: Predicate | Callable[[Any, Any], bool],
                 name: str | None = None):
        super().__init__(name)
        self.keys = _check_sop(keys, self, "keys")
        self.queries = _check_sop(queries, self, "queries")
        if not isinstance(predicate, Predicate):
            fn = _check_callable(predicate, self, 2, what="predicate")
            predicate = Predicate(getattr(fn, "__name__", "predicate"), fn)
        self.predicate = predicate

    def evaluate(self, run, negate: bool = False) -> list[list[bool]]:
        if self.predicate in CONSTANT_PREDICATES:
            return [[(self.predicate is TRUE) != negate] * run.n for _ in range(run.n)]
        keys, queries = run.value(self.keys), run.value(self.queries)
        return [[key is not None and query is not None and self._holds(key, query, k, q) != negate
                 for k, key in enumerate(keys)] for q, query in enumerate(queries)]

    def _holds(self, key, query, k: int, q: int) -> bool:
        try:
            return self.predicate(key, query)
        except Exception as e:
            raise RaspEvaluationError(
                f"Select {self.name}: predicate {self.predicate.name} raised {type(e).__name__}: {e} on "
                f"key {key!r} (position {k}), query {query!r} (position {q})"
            ) from e

    def formula(self, negate: bool = False) -> tuple:
        if self.predicate in CONSTANT_PREDICATES:
            return ("const", (self.predicate is TRUE) != negate)
        return ("leaf", self, negate)

    def to_code(self) -> str:
        from glassformer.rasp.printing import describe_function

        p = self.predicate
        return f"Select({self.keys.name}, {self.queries.name}, {p.name if p.name in COMPARISONS else describe_function(p.fn)})"


class _SelectorPair(Selector):
    """Two selectors combined key by key and query by query (``&``, ``|``)."""

    _child_attrs = ("fst", "snd")

    def __init__(self, fst: Selector, snd: Selector, name: str | None = None):
        super().__init__(name)
        self.fst, self.snd = _check_selector(fst, self, "first"), _check_selector(snd, self, "second")

    def evaluate(self, run, negate: bool = False) -> list[list[bool]]:
        a, b = run.value(self.fst, negate), run.value(self.snd, negate)
        both = isinstance(self, SelectorAnd) != negate  # De Morgan: ~(a & b) = ~a | ~b
        return [[(x and y) if both else (x or y) for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]

    def formula(self, negate: bool = False) -> tuple:
        both = isinstance(self, SelectorAnd) != negate
        return ("and" if both else "or", [self.fst.formula(negate), self.snd.formula(negate)])

    def to_code(self) -> str:
        return f"{self.fst.name} {self.symbol} {self.snd.name}"


class SelectorAnd(_SelectorPair):
    """Both selectors select (k, q)."""

    kind = "select_and"
    symbol = "&"


class SelectorOr(_SelectorPair):
    """Either selector selects (k, q)."""

    kind = "select_or"
    symbol = "|"


class SelectorNot(Selector):
    """The negated comparison: ``~Select(k, q, LT)`` is ``Select(k, q, not LT)``.  A None key or query
    satisfies neither a comparison nor its negation (see the module docstring)."""

    kind = "select_not"
    _child_attrs = ("inner",)

    def __init__(self, inner: Selector, name: str | None = None):
        super().__init__(name)
        self.inner = _check_selector(inner, self, "inner")

    def evaluate(self, run, negate: bool = False) -> list[list[bool]]:
        return run.value(self.inner, not negate)

    def formula(self, negate: bool = False) -> tuple:
        return self.inner.formula(not negate)

    def to_code(self) -> str:
        return f"~{self.inner.name}"
