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

Each primitive is one class, its one home: ``evaluate`` is its meaning (the interpreter calls it),
``lower`` its node in the compiler's graph, ``to_code`` how it prints; a derived primitive gives
``expand()`` instead (docs/rasp_primitives.md).  Selectors live in ``selectors.py``, re-exported here.
"""

from __future__ import annotations

import copy
import math
import operator
from typing import Any, Callable, Sequence

from glassformer.rasp.checks import (  # noqa: F401  (L._check_number, L.is_number: used by the compiler)
    _check_callable, _check_number, _check_selector, _check_sop, _numerical_default, is_number,
)
from glassformer.rasp.errors import RaspCompileError, RaspEvaluationError, RaspProgramError
from glassformer.rasp.expr import RASPExpr, _check_name  # noqa: F401  (re-exported)
from glassformer.rasp.operators import Op1 as _Op1
from glassformer.rasp.operators import Op2 as _Op2
from glassformer.rasp.operators import logical_and as _logical_and
from glassformer.rasp.operators import logical_not as _logical_not
from glassformer.rasp.operators import logical_or as _logical_or
from glassformer.rasp.predicates import (  # noqa: F401  (re-exported: L.EQ, L.Comparison, ...)
    COMPARISONS, CONSTANT_PREDICATES, EQ, FALSE, GEQ, GT, LEQ, LT, NE, NEQ, TRUE, Comparison, Predicate,
)
from glassformer.rasp.selectors import (  # noqa: F401  (re-exported: L.Select, L.Selector, ...)
    Select, Selector, SelectorAnd, SelectorNot, SelectorOr, _SelectorPair,
)

CATEGORICAL = "categorical"
NUMERICAL = "numerical"
ENCODINGS = (CATEGORICAL, NUMERICAL)


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

    # -- the primitive's one home (docs/rasp_primitives.md): each class says what it means, how it prints and
    # how it compiles; the interpreter, the printer and the compiler's graph stage only call these.

    def expand(self) -> SOp | None:
        """A *derived* primitive returns its definition in other primitives here (``length`` is
        ``SelectorWidth(Select(tokens, tokens, TRUE))``); the interpreter and the compiler then run
        that.  None: a core primitive, which defines ``evaluate`` and ``lower`` instead."""
        return None

    def evaluate(self, run) -> list:
        """Its value at each of the ``run.n`` positions of the input ``run.xs``; ``run.value(child)`` is a child's
        values (``run`` is the :class:`~glassformer.rasp.interpreter.Interpreter`). The reference semantics."""
        raise RaspProgramError(f"{type(self).__name__} {self.name}: not a RASP operation the interpreter knows "
                               "(a primitive defines evaluate() and lower(), or expand())")

    def lower(self, graph):
        """Its node in the compiler's graph, made with the builder ``graph`` (``glassformer/rasp/compiler/graph.py``):
        ``graph.node(child)``, ``graph.selector(s)``, ``graph.embedded``, ``graph.elementwise``, ``graph.attend``,
        ``graph.width``."""
        raise RaspCompileError(self.name, f"{type(self).__name__} is not a RASP operation the compiler knows")

    def to_code(self) -> str:
        """The Python expression that builds it from its children's names (``to_code`` prints programs with it)."""
        return f"{type(self).__name__}({', '.join(c.name for c in self.children)})"


def expansion(expr: RASPExpr) -> SOp | None:
    """``expr.expand()``, built once per expression and named like it (None for core primitives)."""
    if not isinstance(expr, SOp):
        return None
    cached = expr.__dict__.get("_expansion")
    if cached is None or cached[0] != expr.id:  # a copy (.named, numerical) has a new id: expand it anew
        sub = expr.expand()
        cached = expr._expansion = (expr.id, None if sub is None else _with_encoding(sub, expr.encoding).named(expr.name))
    return cached[1]


# -- primitives -----------------------------------------------------------------------------------


class Tokens(SOp):
    """The input sequence itself: ``tokens[i]`` is the i-th input token."""

    kind = "tokens"

    def __init__(self, encoding: str = CATEGORICAL, name: str = "tokens"):
        super().__init__(encoding, name)

    def evaluate(self, run) -> list:
        return list(run.xs)

    def lower(self, graph):
        return graph.embedded(self, "tokens")

    def to_code(self) -> str:
        return f"numerical({self.kind})" if self.is_numerical else self.kind


class Indices(SOp):
    """Positions 0, 1, ..., n-1."""

    kind = "indices"

    def __init__(self, encoding: str = CATEGORICAL, name: str = "indices"):
        super().__init__(encoding, name)

    def evaluate(self, run) -> list:
        return list(range(run.n))

    def lower(self, graph):
        return graph.embedded(self, "indices")

    to_code = Tokens.to_code


class Length(SOp):
    """The sequence length n at every position: how many positions an all-true selector selects."""

    kind = "length"

    def __init__(self, encoding: str = CATEGORICAL, name: str = "length"):
        super().__init__(encoding, name)

    def expand(self) -> SOp:
        return SelectorWidth(Select(tokens, tokens, TRUE))

    to_code = Tokens.to_code


class Full(SOp):
    """The constant ``value`` at every position."""

    kind = "full"

    def __init__(self, value: Any, encoding: str = CATEGORICAL, name: str | None = None):
        super().__init__(encoding, name)
        if encoding == NUMERICAL:
            value = _check_number(value, f"Full {self.name}")
        self.value = value

    def evaluate(self, run) -> list:
        return [self.value] * run.n

    def lower(self, graph):
        return graph.embedded(self, "constant", self.value)

    def to_code(self) -> str:
        return f"Full({self.value!r}{_encoding_arg(self)})"


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

    def evaluate(self, run) -> list:
        return [run.apply(self, i, args) for i, args in enumerate(zip(*(run.value(c) for c in self.children)))]

    def lower(self, graph):
        return graph.elementwise(self, [graph.node(c) for c in self.children])

    def to_code(self) -> str:
        from glassformer.rasp.printing import describe_function

        inputs = ", ".join(c.name for c in self.children)
        return f"{type(self).__name__}({describe_function(self.f)}, {inputs}{_encoding_arg(self)})"


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

    evaluate, lower, to_code = Map.evaluate, Map.lower, Map.to_code  # f(x[i], y[i]) instead of f(x[i])

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

    def evaluate(self, run) -> list:
        values, out = run.value(self.sop), []
        for q, row in enumerate(run.value(self.selector)):
            selected = [values[k] for k, s in enumerate(row) if s]
            if not selected:
                out.append(self.default)
            elif self.is_numerical:
                out.append(math.fsum(selected) / len(selected))
            elif any(not same_value(v, selected[0]) for v in selected[1:]):
                raise RaspEvaluationError(
                    f"Aggregate {self.name}: at query position {q} the selected positions hold different values "
                    f"({', '.join(sorted({repr(v) for v in selected}))}); a categorical aggregate needs them all equal "
                    "(make the value numerical to average it)")
            else:
                out.append(selected[0])
        return out

    def lower(self, graph):
        mode = "mean" if self.is_numerical else "copy"
        return graph.attend(self, graph.selector(self.selector), graph.node(self.sop), mode, self.default)

    def to_code(self) -> str:
        return f"{type(self).__name__}({self.selector.name}, {self.sop.name}{_default_arg(self)})"


class SelectorWidth(SOp):
    """How many key positions the selector selects, at each query position (0 ... n)."""

    kind = "selector_width"
    _child_attrs = ("selector",)

    def __init__(self, selector: Selector, encoding: str = CATEGORICAL, name: str | None = None):
        super().__init__(encoding, name)
        self.selector = _check_selector(selector, self, "selector")

    def evaluate(self, run) -> list:
        return [sum(row) for row in run.value(self.selector)]

    def lower(self, graph):
        return graph.width(graph.selector(self.selector), self.name, self.encoding, self.name, hint_w=None)

    def to_code(self) -> str:
        return f"SelectorWidth({self.selector.name}{_encoding_arg(self)})"


class Maximum(SOp):
    """The largest value of ``sop`` among the selected positions (``default`` where none is selected)."""

    kind = "maximum"
    _child_attrs = ("selector", "sop")
    reduce = staticmethod(max)
    mode = "max"  # the compiled head's mode (glassformer/rasp/compiler/attention.py)

    def __init__(self, selector: Selector, sop: SOp, default: Any = None, name: str | None = None):
        sop_ = _check_sop(sop, self, "value", name=name)
        super().__init__(sop_.encoding, name)
        self.selector = _check_selector(selector, self, "selector")
        self.sop = sop_
        self.default = _numerical_default(self, default) if self.is_numerical else default

    def evaluate(self, run) -> list:
        values, out = run.value(self.sop), []
        for q, row in enumerate(run.value(self.selector)):
            selected = [values[k] for k, s in enumerate(row) if s and values[k] is not None]
            try:
                out.append(self.reduce(selected) if selected else self.default)
            except TypeError as e:
                raise RaspEvaluationError(f"{type(self).__name__} {self.name}: values at query position {q} "
                                          f"cannot be ordered: {e}") from e
        return out

    def lower(self, graph):
        return graph.attend(self, graph.selector(self.selector), graph.node(self.sop), self.mode, self.default)

    to_code = Aggregate.to_code


class Minimum(Maximum):
    """The smallest value of ``sop`` among the selected positions (``default`` where none is selected)."""

    kind = "minimum"
    reduce = staticmethod(min)
    mode = "min"


def _encoding_arg(expr: SOp, default: str = CATEGORICAL) -> str:
    return f", encoding={expr.encoding!r}" if expr.encoding != default else ""


def _default_arg(expr: SOp) -> str:
    """The ``default=`` argument, left out where it is "no value" (None, or 0 for a numerical SOp)."""
    no_value = expr.default is None or (expr.is_numerical and expr.default == 0)
    return "" if no_value else f", default={expr.default!r}"


def same_value(a: Any, b: Any) -> bool:
    """Equal as RASP values: ``True`` is not ``1`` (nor ``False`` ``0``), inside tuples too."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return (a is None) == (b is None) and isinstance(a, bool) == isinstance(b, bool) and a == b


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
