"""RASP, the Restricted Access Sequence Processing language (Weiss, Goldberg & Yahav 2021), in Python.

A RASP program describes, position by position, what a transformer computes. Its values are

* **SOps** (sequence operations): one value per position.  The primitives are ``tokens`` (the input),
  ``indices`` (0, 1, ..., n-1) and ``length`` (n everywhere); ``Full(c)`` is a constant.  Element-wise
  functions ``Map(f, x)`` and ``SequenceMap(f, x, y)`` are what an MLP computes.
* **Selectors**: a boolean matrix ``S[q, k]`` saying which key positions k each query position q
  attends to.  ``Select(keys, queries, predicate)`` sets ``S[q, k] = predicate(keys[k], queries[q])``;
  selectors combine with ``&``, ``|`` and ``~``.  A selector is what an attention pattern computes.
* ``Aggregate(selector, sop)`` is an attention head: each query position reads the selected values of
  ``sop``; ``SelectorWidth(selector)`` counts them; ``Maximum`` / ``Minimum`` take their extreme.

Every SOp declares an **encoding**: ``categorical`` (a finite set of labels, stored one-hot in the
residual stream) or ``numerical`` (a number, stored in a single residual dimension).  A categorical
Aggregate returns the one value its selected positions share; a numerical one returns their mean.

**No value.**  ``None`` is RASP's "no value": a categorical Aggregate that selects nothing returns its
``default`` (None unless given), and it is stored as the all-zero vector.  Like SQL's NULL, None never
satisfies a comparison (nor its negation; only the always-true selector selects it), and a Map or
SequenceMap whose input is None returns None without calling its function (0 if its output is
numerical, since a numerical dimension reads "no value" as 0).

Everything here is plain Python: build a program, run it with :func:`glassformer.rasp.evaluate`,
print it with :func:`glassformer.rasp.to_code`, compile it with :func:`glassformer.rasp.compile`.
"""

from __future__ import annotations

import copy
import itertools
import keyword
import math
import operator
import re
from numbers import Real
from typing import Any, Callable, Sequence

from glassformer.rasp.errors import RaspProgramError
from glassformer.rasp.operators import Op1 as _Op1
from glassformer.rasp.operators import Op2 as _Op2
from glassformer.rasp.operators import logical_and as _logical_and
from glassformer.rasp.operators import logical_not as _logical_not
from glassformer.rasp.operators import logical_or as _logical_or

CATEGORICAL = "categorical"
NUMERICAL = "numerical"
ENCODINGS = (CATEGORICAL, NUMERICAL)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- expressions ----------------------------------------------------------------------------------


class RASPExpr:
    """A node of a RASP program.  ``name`` is its label (unique in a program once compiled);
    ``children`` are the expressions it reads (the attributes named in ``_child_attrs``); ``id`` is
    unique per Python object."""

    _ids = itertools.count()
    kind = "expr"  # the prefix of default names
    _child_attrs: tuple[str, ...] = ()

    def __init__(self, name: str | None = None):
        self.id = next(RASPExpr._ids)
        self._name = _check_name(name, self) if name is not None else None

    @property
    def name(self) -> str:
        return self._name if self._name is not None else f"{self.kind}_{self.id}"

    @property
    def children(self) -> tuple[RASPExpr, ...]:
        return tuple(getattr(self, attr) for attr in self._child_attrs)

    def named(self, name: str) -> RASPExpr:
        """A copy of this expression with the label ``name`` (a Python identifier)."""
        new = copy.copy(self)
        new.id = next(RASPExpr._ids)
        new._name = _check_name(name, self)
        return new

    def __repr__(self) -> str:
        from glassformer.rasp.printing import expr_to_string

        return expr_to_string(self)


def _check_name(name: Any, expr: RASPExpr) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
        raise RaspProgramError(f"{type(expr).__name__}: name {name!r} must be a Python identifier such as 'reverse'")
    return name


def _arithmetic(fn: Callable[[Any, Any], Any], symbol: str) -> tuple[Callable, Callable]:
    """The SOp methods behind ``x <symbol> other`` and ``other <symbol> x`` (see ``SOp._binary``)."""

    def method(self: SOp, other: Any) -> SOp:
        return self._binary(other, fn, symbol)

    def reflected(self: SOp, other: Any) -> SOp:
        return self._binary(other, fn, symbol, reflected=True)

    return method, reflected


class SOp(RASPExpr):
    """A sequence operation: one value per position, ``categorical`` or ``numerical``."""

    kind = "sop"

    def __init__(self, encoding: str = CATEGORICAL, name: str | None = None):
        super().__init__(name)
        if encoding not in ENCODINGS:
            raise RaspProgramError(f"{type(self).__name__} {self.name}: encoding {encoding!r} is not one of {ENCODINGS}")
        self.encoding = encoding

    @property
    def is_numerical(self) -> bool:
        return self.encoding == NUMERICAL

    # Arithmetic builds Maps (with a constant) and SequenceMaps (with another SOp): ``x + 1`` is
    # ``Map(lambda x: x + 1, x)``, ``x + y`` is ``SequenceMap(lambda x, y: x + y, x, y)``.  The result is
    # numerical when every SOp operand is numerical, categorical otherwise.
    def _binary(self, other: Any, fn: Callable, symbol: str, reflected: bool = False) -> SOp:
        if isinstance(other, SOp):
            a, b = (other, self) if reflected else (self, other)
            enc = NUMERICAL if a.is_numerical and b.is_numerical else CATEGORICAL
            return SequenceMap(_Op2(fn, symbol), a, b, encoding=enc)
        if isinstance(other, RASPExpr):
            raise RaspProgramError(f"cannot combine SOp {self.name} with {type(other).__name__} {other.name} using {symbol}")
        return Map(_Op1(fn, symbol, other, reflected), self, encoding=self.encoding)

    def _unary(self, fn: Callable, symbol: str) -> SOp:
        return Map(_Op1(fn, symbol, None, unary=True), self, encoding=self.encoding)

    # One operator a line: the methods for ``x <symbol> other`` and for the reflected ``other <symbol> x``.
    # ``&``, ``|`` and ``~`` are the logical and, or and not.
    __add__, __radd__ = _arithmetic(operator.add, "+")
    __sub__, __rsub__ = _arithmetic(operator.sub, "-")
    __mul__, __rmul__ = _arithmetic(operator.mul, "*")
    __truediv__, __rtruediv__ = _arithmetic(operator.truediv, "/")
    __floordiv__ = _arithmetic(operator.floordiv, "//")[0]  # no reflected ``c // x``
    __mod__ = _arithmetic(operator.mod, "%")[0]  # no reflected ``c % x``
    __and__, __rand__ = _arithmetic(_logical_and, "and")
    __or__, __ror__ = _arithmetic(_logical_or, "or")

    def __neg__(self): return self._unary(operator.neg, "-")
    def __invert__(self): return self._unary(_logical_not, "not")

    # Equality stays Python's identity (SOps are dict keys); compare values with a Map.
    __hash__ = object.__hash__


# -- primitives -----------------------------------------------------------------------------------


class Tokens(SOp):
    """The input sequence itself: ``tokens[i]`` is the i-th input token."""

    kind = "tokens"

    def __init__(self, encoding: str = CATEGORICAL, name: str = "tokens"):
        super().__init__(encoding, name)


class Indices(SOp):
    """Positions 0, 1, ..., n-1."""

    kind = "indices"

    def __init__(self, encoding: str = CATEGORICAL, name: str = "indices"):
        super().__init__(encoding, name)


class Length(SOp):
    """The sequence length n at every position (a transformer computes it by attending to everything)."""

    kind = "length"

    def __init__(self, encoding: str = CATEGORICAL, name: str = "length"):
        super().__init__(encoding, name)


class Full(SOp):
    """The constant ``value`` at every position."""

    kind = "full"

    def __init__(self, value: Any, encoding: str = CATEGORICAL, name: str | None = None):
        super().__init__(encoding, name)
        if encoding == NUMERICAL:
            value = _check_number(value, f"Full {self.name}")
        self.value = value


tokens = Tokens()
indices = Indices()
length = Length()


# -- element-wise operations (MLPs) ---------------------------------------------------------------


class Map(SOp):
    """``Map(f, x)[i] = f(x[i])``: a function applied at every position (an MLP computes it)."""

    kind = "map"
    _child_attrs = ("inner",)

    def __init__(self, f: Callable[[Any], Any], inner: SOp, encoding: str = CATEGORICAL, name: str | None = None):
        super().__init__(encoding, name)
        self.f = _check_callable(f, self, 1)
        self.inner = _check_sop(inner, self, "input")


class SequenceMap(SOp):
    """``SequenceMap(f, x, y)[i] = f(x[i], y[i])``: a function of two SOps, position by position."""

    kind = "sequence_map"
    _child_attrs = ("fst", "snd")

    def __init__(self, f: Callable[[Any, Any], Any], fst: SOp, snd: SOp, encoding: str = CATEGORICAL,
                 name: str | None = None):
        super().__init__(encoding, name)
        self.f = _check_callable(f, self, 2)
        self.fst = _check_sop(fst, self, "first input")
        self.snd = _check_sop(snd, self, "second input")


# -- selectors (attention patterns) ---------------------------------------------------------------


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


class Selector(RASPExpr):
    """A boolean matrix S[query, key]; combine with ``&``, ``|`` and ``~``."""

    kind = "selector"

    def __and__(self, other: Selector) -> Selector:
        return SelectorAnd(self, other)

    def __or__(self, other: Selector) -> Selector:
        return SelectorOr(self, other)

    def __invert__(self) -> Selector:
        return SelectorNot(self)


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


class _SelectorPair(Selector):
    """Two selectors combined key by key and query by query (``&``, ``|``)."""

    _child_attrs = ("fst", "snd")

    def __init__(self, fst: Selector, snd: Selector, name: str | None = None):
        super().__init__(name)
        self.fst, self.snd = _check_selector(fst, self, "first"), _check_selector(snd, self, "second")


class SelectorAnd(_SelectorPair):
    """Both selectors select (k, q)."""

    kind = "select_and"


class SelectorOr(_SelectorPair):
    """Either selector selects (k, q)."""

    kind = "select_or"


class SelectorNot(Selector):
    """The negated comparison: ``~Select(k, q, LT)`` is ``Select(k, q, not LT)``.  A None key or query
    satisfies neither a comparison nor its negation (see the module docstring)."""

    kind = "select_not"
    _child_attrs = ("inner",)

    def __init__(self, inner: Selector, name: str | None = None):
        super().__init__(name)
        self.inner = _check_selector(inner, self, "inner")


# -- attention operations -------------------------------------------------------------------------


class Aggregate(SOp):
    """An attention head reading ``sop`` at the positions ``selector`` selects.

    * categorical ``sop``: the value the selected positions share (an error if they disagree),
      ``default`` where nothing is selected;
    * numerical ``sop``: the mean of the selected values, ``default`` (0 unless given) where nothing is.
    """

    kind = "aggregate"
    _child_attrs = ("selector", "sop")

    def __init__(self, selector: Selector, sop: SOp, default: Any = None, encoding: str | None = None,
                 name: str | None = None):
        sop_ = _check_sop(sop, self, "value", name=name)
        super().__init__(encoding or sop_.encoding, name)
        self.selector = _check_selector(selector, self, "selector")
        self.sop = sop_
        if self.encoding != sop_.encoding:
            what = "take the mean of" if self.is_numerical else "take a single value of"
            raise RaspProgramError(
                f"Aggregate {self.name}: cannot {what} {sop_.encoding} SOp {sop_.name}; a numerical Aggregate "
                f"averages a numerical SOp, a categorical one copies a categorical SOp"
            )
        self.default = _numerical_default(self, default) if self.is_numerical else default


class SelectorWidth(SOp):
    """How many key positions the selector selects, at each query position (0 ... n)."""

    kind = "selector_width"
    _child_attrs = ("selector",)

    def __init__(self, selector: Selector, encoding: str = CATEGORICAL, name: str | None = None):
        super().__init__(encoding, name)
        self.selector = _check_selector(selector, self, "selector")


class Maximum(SOp):
    """The largest value of ``sop`` among the selected positions (``default`` where none is selected)."""

    kind = "maximum"
    _child_attrs = ("selector", "sop")
    reduce = staticmethod(max)

    def __init__(self, selector: Selector, sop: SOp, default: Any = None, name: str | None = None):
        sop_ = _check_sop(sop, self, "value", name=name)
        super().__init__(sop_.encoding, name)
        self.selector = _check_selector(selector, self, "selector")
        self.sop = sop_
        self.default = _numerical_default(self, default) if self.is_numerical else default


class Minimum(Maximum):
    """The smallest value of ``sop`` among the selected positions (``default`` where none is selected)."""

    kind = "minimum"
    reduce = staticmethod(min)


# -- annotations ----------------------------------------------------------------------------------


def numerical(sop: SOp) -> SOp:
    """A copy of ``sop`` whose values are stored as one number (e.g. ``numerical(Map(f, tokens))``)."""
    return _with_encoding(sop, NUMERICAL)


def categorical(sop: SOp) -> SOp:
    """A copy of ``sop`` whose values are stored one-hot."""
    return _with_encoding(sop, CATEGORICAL)


def _with_encoding(sop: SOp, encoding: str) -> SOp:
    _check_sop(sop, None, "argument")
    if isinstance(sop, (Aggregate, Maximum)) and sop.sop.encoding != encoding:
        raise RaspProgramError(
            f"{type(sop).__name__} {sop.name}: its encoding follows its value SOp {sop.sop.name} ({sop.sop.encoding}); "
            f"make {sop.sop.name} {encoding} instead"
        )
    new = copy.copy(sop)
    new.id = next(RASPExpr._ids)
    new.encoding = encoding
    if isinstance(new, (Full, Aggregate, Maximum)) and encoding == NUMERICAL:
        attr = "value" if isinstance(new, Full) else "default"
        setattr(new, attr, _numerical_default(sop, getattr(new, attr), attr))
    return new


# -- checks ---------------------------------------------------------------------------------------


def _check_sop(x: Any, op: RASPExpr | None, role: str, name: str | None = None) -> SOp:
    if not isinstance(x, SOp):
        owner = f"{type(op).__name__} {name or (op.name if op is not None and hasattr(op, 'id') else '')}".strip() if op is not None else "argument"
        got = f"{type(x).__name__} {x.name}" if isinstance(x, RASPExpr) else type(x).__name__
        raise RaspProgramError(f"{owner}: {role} must be a SOp (tokens, indices, a Map, ...), got {got}")
    return x


def _check_selector(x: Any, op: RASPExpr, role: str) -> Selector:
    if not isinstance(x, Selector):
        got = f"{type(x).__name__} {x.name}" if isinstance(x, RASPExpr) else type(x).__name__
        raise RaspProgramError(f"{type(op).__name__} {op.name}: {role} argument must be a Selector (Select(...)), got {got}")
    return x


def _check_callable(f: Any, op: RASPExpr, n_args: int, what: str = "function") -> Callable:
    if not callable(f) or isinstance(f, RASPExpr):
        raise RaspProgramError(f"{type(op).__name__} {op.name}: {what} must be a callable of {n_args} argument(s), got {type(f).__name__}")
    return f


def _check_number(value: Any, where: str) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if not is_number(value):
        raise RaspProgramError(f"{where}: a numerical value must be a finite number, got {value!r}")
    return value


def _numerical_default(expr: SOp, value: Any, attr: str = "default") -> int | float:
    """``value`` as a numerical SOp's default (or Full value): None reads as 0, "no value"."""
    return _check_number(0 if value is None else value, f"{type(expr).__name__} {expr.name} {attr}")


def is_number(value: Any) -> bool:
    """A finite real number that fits a float (an int of 400 digits does not)."""
    try:
        return isinstance(value, Real) and math.isfinite(float(value))
    except OverflowError:
        return False


def walk(program: RASPExpr) -> list[RASPExpr]:
    """Every expression ``program`` depends on, each once, children before parents (topological order)."""
    order: list[RASPExpr] = []
    seen: set[int] = set()
    stack: list[tuple[RASPExpr, bool]] = [(program, False)]
    while stack:
        expr, expanded = stack.pop()
        if expanded:
            order.append(expr)
            continue
        if expr.id in seen:
            continue
        seen.add(expr.id)
        stack.append((expr, True))
        for child in reversed(expr.children):
            if child.id not in seen:
                stack.append((child, False))
    return order


def sequence(value: Sequence | str) -> list:
    """An input as a list of tokens (a string is its characters)."""
    return list(value)
