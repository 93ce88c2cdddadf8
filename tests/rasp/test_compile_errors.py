"""Where a program cannot be compiled exactly, compilation fails with an error naming the operation
and the reason -- never a silently wrong model."""

import itertools

import pytest
import torch

from glassformer import rasp
from glassformer.errors import GlassformerError
from glassformer.rasp import (
    LEQ, TRUE, Aggregate, Map, Maximum, Select, SelectorWidth, SequenceMap, indices, library, numerical, tokens,
)
from glassformer.rasp.compiler.values import same_value
from glassformer.rasp.errors import RaspCompileError


def test_errors_are_glassformer_errors():
    assert issubclass(RaspCompileError, GlassformerError) and issubclass(RaspCompileError, ValueError)
    e = RaspCompileError("op", "why")
    assert (e.op, e.reason) == ("op", "why") and "cannot compile 'op': why" in str(e)


def test_too_many_input_combinations():
    big = SequenceMap(lambda t, i: (t, i), tokens, indices, name="pairs")
    vocab = [f"w{i}" for i in range(1000)]
    with pytest.raises(RaspCompileError, match=r"'pairs'.*1000 x 64 value combinations"):
        rasp.compile(big, vocab=vocab, max_len=64)


LETTERS = "abcdefghij"


def unlisted_mean():
    """Means of up to 16 of 0.1, 0.2, ..., 1.0: binary floats with no short common denominator, and
    too many multisets to list."""
    tenth = numerical(Map(lambda t: 0.1 * (ord(t) - 96), tokens, name="tenth"))
    return numerical(Aggregate(Select(indices, indices, LEQ), tenth, name="mean"))


def test_nonlinear_function_of_an_unlisted_number():
    mean = unlisted_mean()
    squared = numerical(Map(lambda m: m * m, mean, name="squared"))
    with pytest.raises(RaspCompileError, match=r"'squared'.*finite value set"):
        rasp.compile(squared, vocab=LETTERS, max_len=16)
    linear = numerical(mean * 2 - 1).named("linear")  # an affine map needs no value list
    compiled = rasp.compile(linear, vocab=LETTERS, max_len=16, approximate=True)
    assert compiled.run("abc") == pytest.approx([-0.8, -0.7, -0.6], abs=1e-5)


def test_categorical_function_of_an_unlisted_number():
    with pytest.raises(RaspCompileError, match="'positive'"):
        rasp.compile(Map(lambda m: m > 0.15, unlisted_mean(), name="positive"), vocab=LETTERS, max_len=16)


def test_extreme_of_unlisted_numbers():
    top = Maximum(Select(indices, indices, TRUE), unlisted_mean(), name="top")
    with pytest.raises(RaspCompileError, match="'top'.*max needs the finite value set"):
        rasp.compile(numerical(top * 2), vocab=LETTERS, max_len=16, approximate=True)


def test_float_rounding_twins_are_one_value():
    """The pair balance opens - closes (Tracr's ``make_pair_balance``): ")(((((" gives 2/3 as
    0.6666666666666667 and "aa((((" as 0.6666666666666666 (float rounding in the interpreter itself).
    No model tells such twins apart, so they are one value: the program compiles and agrees with the
    interpreter up to twins on every input; a Map that separates twins is refused, naming it."""
    def mean_of(token, name):
        marks = numerical(Map(lambda t, token=token: 1 if t == token else 0, tokens))
        return numerical(Aggregate(Select(indices, indices, LEQ), marks, name=name))

    balance = (mean_of("(", "opens") - mean_of(")", "closes")).named("balance")
    assert rasp.evaluate(balance, ")(((((")[-1] == 0.6666666666666667
    assert rasp.evaluate(balance, "aa((((")[-1] == 0.6666666666666666
    inputs = [list(x) for n in range(1, 7) for x in itertools.product("()a", repeat=n)]
    compiled = rasp.compile(balance, vocab="()a", max_len=6)
    assert all(same_value(got, rasp.evaluate(balance, xs)) for xs, got in zip(inputs, compiled.run_batch(inputs)))
    sign = Map(lambda b: b > 0, balance, name="positive")  # treats twins alike: compiles, exact
    compiled = rasp.compile(sign, vocab="()a", max_len=6)
    assert compiled.run_batch(inputs) == [rasp.evaluate(sign, xs) for xs in inputs]
    exact = Map(lambda b: b == 2 / 3, balance, name="exactly_two_thirds")  # separates them: refused
    with pytest.raises(RaspCompileError, match="'exactly_two_thirds'.*differ only by float rounding") as info:
        rasp.compile(exact, vocab="()a", max_len=6)
    assert info.value.float_limited


def test_values_too_close_for_the_dtype():
    close = numerical(Map(lambda t: 1000.0 + 0.125 * (t == "a"), tokens, name="close"))  # means: gaps ~1e-3
    mean = numerical(Aggregate(Select(indices, indices, LEQ), close, name="mean_close"))
    with pytest.raises(RaspCompileError, match="'mean_close'.*rounding") as info:
        rasp.compile(mean, vocab="ab", max_len=10, dtype="float32")
    assert info.value.float_limited
    compiled = rasp.compile(mean, vocab="ab", max_len=10)  # auto: float64 makes it exact
    assert compiled.summary()["dtype"] == "float64"
    for xs in ("a", "ab", "abba", "bbbbbbbbba"):
        assert compiled.run(xs) == rasp.evaluate(mean, xs)


def test_an_output_whose_values_cannot_be_listed_is_only_approximate_on_request():
    mean = unlisted_mean()
    with pytest.raises(RaspCompileError, match="'mean'.*cannot be listed.*approximate=True"):
        rasp.compile(mean, vocab=LETTERS, max_len=16)
    compiled = rasp.compile(mean, vocab=LETTERS, max_len=16, approximate=True)
    for xs in ("a", "abc", "jjab"):
        assert compiled.run(xs) == pytest.approx(rasp.evaluate(mean, xs), rel=1e-5)


def test_bad_arguments():
    with pytest.raises(RaspCompileError, match="max_len must be a positive integer"):
        rasp.compile(library.reverse(), vocab="ab", max_len=0)
    with pytest.raises(RaspCompileError, match="vocabulary is empty"):
        rasp.compile(library.reverse(), vocab="", max_len=4)
    with pytest.raises(RaspCompileError, match="None cannot be a token"):
        rasp.compile(library.reverse(), vocab=["a", None], max_len=4)
    with pytest.raises(RaspCompileError, match="dtype"):
        rasp.compile(library.reverse(), vocab="ab", max_len=4, dtype="float16")
    with pytest.raises(RaspCompileError, match="only a SOp"):
        rasp.compile(Select(tokens, tokens, TRUE), vocab="ab", max_len=4)
    with pytest.raises(RaspCompileError, match="numerical tokens need a vocabulary of numbers"):
        rasp.compile(numerical(tokens) + 1, vocab="ab", max_len=4)


def test_forced_float64_and_numerical_tokens():
    program = numerical(Aggregate(Select(indices, indices, LEQ), numerical(tokens), name="running_mean"))
    compiled = rasp.compile(program, vocab=[0, 2, 5], max_len=6, dtype=torch.float64)
    assert compiled.summary()["dtype"] == "float64"
    assert compiled.run([5, 0, 2, 2]) == [5.0, 2.5, 7 / 3, 2.25]
    width = rasp.compile(SelectorWidth(Select(tokens, tokens, TRUE)), vocab="ab", max_len=5, dtype="float32")
    assert width.run("abab") == [4] * 4
