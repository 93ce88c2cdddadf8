"""A derived primitive -- one defined in terms of others by ``expand()`` -- is one class: the
interpreter, the printer, the compiler (and its causal check) need no change.  ``length`` is one."""

import itertools

import pytest

from glassformer import rasp
from glassformer.rasp import EQ, LEQ, Select, SelectorWidth, SOp, indices, tokens
from glassformer.rasp.errors import RaspCompileError


class CountSame(SOp):
    """How many positions hold the same value as this one ("aab" -> [2, 2, 1]); with ``so_far``, only
    this position and earlier ones."""

    kind = "count_same"
    _child_attrs = ("sop",)

    def __init__(self, sop: SOp, so_far: bool = False, name: str | None = None):
        super().__init__(name=name)
        self.sop, self.so_far = sop, so_far

    def expand(self) -> SOp:
        same = Select(self.sop, self.sop, EQ)
        return SelectorWidth(same & Select(indices, indices, LEQ) if self.so_far else same)


def test_a_derived_primitive_is_one_class():
    program = CountSame(tokens).named("same")
    assert rasp.evaluate(program, "aab") == [2, 2, 1]
    assert "same = CountSame(tokens)" in rasp.to_code(program)
    inputs = [list(x) for n in range(1, 6) for x in itertools.product("ab", repeat=n)]
    compiled = rasp.compile(program + 1, "ab", 5)  # used like any SOp
    assert compiled.run_batch(inputs) == [rasp.evaluate(program + 1, xs) for xs in inputs]
    assert "1/(same+1)" in compiled.residual_labels  # lowered under its own name
    so_far = CountSame(tokens, so_far=True).named("seen")
    assert rasp.compile(so_far, "ab", 5, causal=True).run_batch(inputs) == [rasp.evaluate(so_far, xs) for xs in inputs]
    with pytest.raises(RaspCompileError, match="'same'.*no part of it compares positions"):
        rasp.compile(program, "ab", 5, causal=True)


def test_length_is_a_derived_primitive():
    assert rasp.length.expand() is not None and rasp.evaluate(rasp.length, "abc") == [3, 3, 3]
    assert rasp.compile(rasp.length, "ab", 6).run("abab") == [4] * 4
    assert rasp.evaluate(rasp.length.named("n") * 2, "ab") == [4, 4]


# -- core primitives: evaluate, lower and to_code in the class, nothing outside it --------------------


class Clip(SOp):
    """A new element-wise primitive: ``sop`` clipped to [lo, hi] ("Clip(x, 0, 2)"), computed by an MLP."""

    kind = "clip"
    _child_attrs = ("sop",)

    def __init__(self, sop: SOp, lo, hi, name: str | None = None):
        super().__init__(sop.encoding, name)
        self.sop, self.lo, self.hi = sop, lo, hi

    def evaluate(self, run) -> list:  # the interpreter's semantics (RASP's None rule: None stays None)
        return [None if x is None else min(max(x, self.lo), self.hi) for x in run.value(self.sop)]

    def lower(self, graph):  # the compiler's graph: one MLP
        return graph.elementwise(self, [graph.node(self.sop)], f=lambda x: min(max(x, self.lo), self.hi))

    def to_code(self) -> str:  # how to_code prints it
        return f"Clip({self.sop.name}, {self.lo!r}, {self.hi!r})"


class Exists(SOp):
    """A new head kind: True where the selector selects any key, else False ("is there a smaller token?").
    It lowers to a width head (1/(w+1)) and an MLP reading w > 0: no compiler module changes."""

    kind = "exists"
    _child_attrs = ("selector",)

    def __init__(self, selector, name: str | None = None):
        super().__init__(name=name)
        self.selector = selector

    def evaluate(self, run) -> list:
        return [any(row) for row in run.value(self.selector)]

    def lower(self, graph):
        width = graph.width(graph.selector(self.selector), f"{self.name}_width", "categorical", self.name, hint_w=None)
        return graph.elementwise(self, [width], f=lambda w: w > 0)

    def to_code(self) -> str:
        return f"Exists({self.selector.name})"


def test_a_core_primitive_is_one_class_too():
    """Two primitives defined only in this file (no expand()): the interpreter runs their evaluate, the
    compiler their lower, the printer their to_code; compiled models agree with the interpreter on every
    input up to length 5, also inside other operations and causally."""
    smaller = Exists(Select(tokens, tokens, rasp.LT)).named("smaller")
    clipped = Clip(rasp.numerical(rasp.Map(lambda t: "abc".index(t), tokens)) * 2 - 1, 0, 2).named("clipped")
    assert rasp.evaluate(smaller, "cab") == [True, False, True]
    assert rasp.evaluate(clipped, "cab") == [2, 0, 1]
    code = rasp.to_code(smaller) + "\n" + rasp.to_code(clipped)
    assert "smaller = Exists(select_" in code and "clipped = Clip(" in code and ", 0, 2)" in code
    inputs = [list(x) for n in range(1, 6) for x in itertools.product("abc", repeat=n)]
    for program in (smaller, clipped, rasp.Aggregate(Select(indices, indices, EQ), clipped + 1, name="after")):
        compiled = rasp.compile(program, "abc", 5)
        assert compiled.run_batch(inputs) == [rasp.evaluate(program, xs) for xs in inputs], program.name
    seen_smaller = Exists(Select(tokens, tokens, rasp.LT) & Select(indices, indices, LEQ)).named("seen_smaller")
    compiled = rasp.compile(seen_smaller, "abc", 5, causal=True)
    assert compiled.run_batch(inputs) == [rasp.evaluate(seen_smaller, xs) for xs in inputs]
    assert compiled.model.config.arch == "decoder"


def test_an_sop_subclass_without_rules_is_a_clear_error():
    class Unknown(SOp):
        _child_attrs = ("sop",)

        def __init__(self, sop):
            super().__init__()
            self.sop = sop

    with pytest.raises(rasp.RaspProgramError, match="Unknown .*not a RASP operation the interpreter knows"):
        rasp.evaluate(Unknown(tokens), "ab")
    with pytest.raises(RaspCompileError, match="Unknown is not a RASP operation the compiler knows"):
        rasp.compile(Unknown(tokens), "ab", 3)
