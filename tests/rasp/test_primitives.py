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
