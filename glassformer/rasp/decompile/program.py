"""The decompiled program's building blocks: lookup tables as named callables, and printing as a Python
file that ``glassformer rasp run`` / ``rasp compile`` load (``program`` is its output SOp).

A table is printed as a dict literal beside the code that uses it, and the program built in memory
calls the very same dict, so the printed file and the object behave identically:

    T_out = {'a': 'a', 'b': 'b'}
    output = Map(lambda x: T_out.get(x, 'a'), aggregate_l1h0)
"""

from __future__ import annotations

from typing import Any

from glassformer.rasp import language as L


class Table:
    """``f(x)`` or ``f(x, y)`` read from a dict (``default`` for a combination never seen)."""

    def __init__(self, name: str, mapping: dict, default: Any = None, arity: int = 1):
        self.name, self.mapping, self.default, self.arity = name, mapping, default, arity

    def __call__(self, *args):
        key = args[0] if self.arity == 1 else tuple(args)
        return self.mapping.get(key, self.default)

    @property
    def source(self) -> str:
        args = "x" if self.arity == 1 else ", ".join("xyzw"[: self.arity])
        key = "x" if self.arity == 1 else f"({args})"
        return f"lambda {args}: {self.name}.get({key}, {self.default!r})"

    def definition(self) -> str:
        return f"{self.name} = {_dict_literal(self.mapping)}"


class Affine:
    """``f(x) = a * x + b``: a table over numbers that lies exactly on this line (it then also answers for
    numbers the table never saw, such as counts that only longer inputs reach)."""

    def __init__(self, a: int, b: int):
        self.a, self.b = a, b

    def __call__(self, x):
        return self.a * x + self.b

    @property
    def source(self) -> str:
        if self.a == 1 and self.b == 0:
            return "lambda x: x"
        if self.a == 1:
            return f"lambda x: x + {self.b}" if self.b >= 0 else f"lambda x: x - {-self.b}"
        if self.a == -1:
            return f"lambda x: {self.b!r} - x"
        return f"lambda x: {self.a!r} * x + {self.b!r}"


class Linear2:
    """``f(x, y) = a * x + b * y``: a two-input table whose distinct outputs are exactly the distinct values
    of this sum (it then answers for pairs the table never saw, such as the counts of longer inputs)."""

    arity = 2

    def __init__(self, a: int, b: int):
        self.a, self.b = a, b

    def __call__(self, x, y):
        return self.a * x + self.b * y

    @property
    def source(self) -> str:
        term = lambda c, v: v if c == 1 else (f"-{v}" if c == -1 else f"{c} * {v}")
        text = " + ".join(term(c, v) for c, v in ((self.a, "x"), (self.b, "y")) if c)
        return f"lambda x, y: {text.replace('+ -', '- ')}"


def linear_relabel(mapping: dict, max_coef: int = 3) -> Linear2 | None:
    """A :class:`Linear2` whose sums tell the table's outputs apart exactly as the table does (one sum per
    output, a different sum for each), over integer inputs; None if no small coefficients do."""
    keys = list(mapping)
    if len(keys) < 3 or not all(isinstance(k, tuple) and len(k) == 2 and all(type(v) is int for v in k) for k in keys):
        return None
    coefs = sorted(((a, b) for a in range(-max_coef, max_coef + 1) for b in range(-max_coef, max_coef + 1)
                    if a or b), key=lambda ab: (abs(ab[0]) + abs(ab[1]), ab[0] < 0 or ab[1] < 0, ab))
    for a, b in coefs:
        out_of: dict = {}
        sum_of: dict = {}
        ok = True
        for (x, y), v in mapping.items():
            s = a * x + b * y
            if out_of.setdefault(s, v) != v or sum_of.setdefault(v, s) != s:
                ok = False
                break
        if ok:
            return Linear2(a, b)
    return None


class PairSet:
    """A predicate ``(key, query) in S``: the table of a selector that no named comparison fits."""

    def __init__(self, name: str, pairs: set):
        self.name, self.pairs = name, pairs
        self.__name__ = name

    def __call__(self, key, query):
        return (key, query) in self.pairs

    @property
    def source(self) -> str:
        return f"lambda k, q: (k, q) in {self.name}"

    def definition(self) -> str:
        return f"{self.name} = {{{', '.join(repr(p) for p in sorted(self.pairs, key=repr))}}}"


class KeySet(PairSet):
    """A predicate ``key in S`` that ignores the query: a head whose keys are the positions holding one of
    some values (compiled from a comparison with a constant, such as ``Select(is_open, Full(True), EQ)``)."""

    def __init__(self, name: str, keys: set):
        super().__init__(name, set(keys))

    def __call__(self, key, query):
        return key in self.pairs

    @property
    def source(self) -> str:
        return f"lambda k, q: k in {self.name}"


class Pack:
    """``(x, y)``: two SOps as one tuple-valued SOp (the input of a three-way table)."""

    source = "lambda x, y: (x, y)"

    def __call__(self, x, y):
        return (x, y)


def table_or_affine(name: str, mapping: dict, default: Any = None):
    """An :class:`Affine` when ``mapping`` is a line ``v = a * k + b`` through >= 3 numbers (exactly, for
    ints; to 1e-9, for floats), else a :class:`Table`."""
    items = list(mapping.items())
    numbers = all(_is_number(k) and _is_number(v) for k, v in items)
    if not numbers or len(items) < 3:
        return Table(name, mapping, default)
    ints = all(type(k) is int and type(v) is int for k, v in items)
    (k0, v0), (k1, v1) = min(items), max(items)
    if k1 == k0:
        return Table(name, mapping, default)
    if ints:
        if (v1 - v0) % (k1 - k0):
            return Table(name, mapping, default)
        a = (v1 - v0) // (k1 - k0)
        b = v0 - a * k0
        ok = a != 0 and all(v == a * k + b for k, v in items)
    else:
        a = (v1 - v0) / (k1 - k0)
        b = v0 - a * k0
        a, b = (round(a) if abs(a - round(a)) < 1e-9 else a), (round(b) if abs(b - round(b)) < 1e-9 else b)
        ok = a != 0 and all(abs(v - (a * k + b)) <= 1e-9 * (1 + abs(v)) for k, v in items)
    return Affine(a, b) if ok else Table(name, mapping, default)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _dict_literal(mapping: dict) -> str:
    items = sorted(mapping.items(), key=lambda kv: repr(kv[0]))
    return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in items) + "}"


# -- printing ---------------------------------------------------------------------------------------

_HEADER = '''"""{title}

Decompiled by glassformer (`glassformer decompile`); run it with
    glassformer rasp run {file}:program --input ...
Every step names the model component it reads and its interchange-intervention accuracy (IIA).
"""

from glassformer.rasp import (EQ, GEQ, GT, LEQ, LT, NE, TRUE, Aggregate, Full, Map, Maximum, Minimum, Select,
                              SelectorWidth, SequenceMap, indices, tokens)
'''


def _code(expr: L.RASPExpr) -> str:
    from glassformer.rasp.printing import expr_to_code

    if isinstance(expr, L.Select) and isinstance(expr.predicate.fn, PairSet):
        return f"Select({expr.keys.name}, {expr.queries.name}, {expr.predicate.fn.source})"
    if isinstance(expr, L.Select) and expr.predicate.name not in L.COMPARISONS:
        return f"Select({expr.keys.name}, {expr.queries.name}, {expr.predicate.fn.source})"
    return expr_to_code(expr)


def program_source(program: L.SOp, notes: dict[int, str], title: str, file: str = "program.py") -> str:
    """The program as a Python file: tables first where used, one assignment per operation, each step's
    note (by expression id) as a comment above it, and ``program = <output>`` last."""
    lines = [_HEADER.format(title=title, file=file)]
    for expr in L.walk(program):
        if isinstance(expr, (L.Tokens, L.Indices)) and expr.name == expr.kind:
            continue
        fns = [getattr(expr, "f", None)]
        if isinstance(expr, L.Select):
            fns.append(expr.predicate.fn)
        for fn in fns:
            if callable(getattr(fn, "definition", None)):  # a Table, PairSet or soft.LinearArgmax
                lines.append(fn.definition())
        if expr.id in notes:
            lines.append(f"# {notes[expr.id]}")
        lines.append(f"{expr.name} = {_code(expr)}")
    lines.append(f"program = {program.name}")
    return "\n".join(lines) + "\n"
