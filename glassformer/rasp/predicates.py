"""Predicates for ``Select(keys, queries, predicate)``: named comparisons, read ``key <op> query``."""

from __future__ import annotations

import operator
from typing import Any, Callable


class Predicate:
    """A comparison ``predicate(key, query) -> bool`` with a name and a printable symbol."""

    def __init__(self, name: str, fn: Callable[[Any, Any], bool], symbol: str | None = None):
        self.name, self.fn, self.symbol = name, fn, symbol

    def __call__(self, key: Any, query: Any) -> bool:
        return bool(self.fn(key, query))

    def __repr__(self) -> str:
        return self.name


class Comparison:
    """The built-in predicates, read as ``key <symbol> query`` (Tracr's convention): ``Select(indices,
    indices, LT)`` selects, for query position q, every key position k < q.  TRUE selects every key
    position, FALSE none.  ``Comparison.LT`` is ``LT``; ``COMPARISONS`` holds them by name."""


COMPARISONS = {name: Predicate(name, fn, symbol) for name, (symbol, fn) in {
    # name: (symbol, predicate(key, query))
    "EQ": ("==", operator.eq),
    "NE": ("!=", operator.ne),
    "LT": ("<", operator.lt),
    "LEQ": ("<=", operator.le),
    "GT": (">", operator.gt),
    "GEQ": (">=", operator.ge),
    "TRUE": ("True", lambda key, query: True),
    "FALSE": ("False", lambda key, query: False),
}.items()}
for _name, _predicate in COMPARISONS.items():
    setattr(Comparison, _name, _predicate)
del _name, _predicate
EQ, NE, LT, LEQ, GT, GEQ, TRUE, FALSE = COMPARISONS.values()  # in the table's order
NEQ = NE
CONSTANT_PREDICATES = (TRUE, FALSE)
