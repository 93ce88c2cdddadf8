"""Where a program cannot be compiled exactly, compilation fails with an error naming the operation
and the reason -- never a silently wrong model."""

import pytest
import torch

from glassformer import rasp
from glassformer.errors import GlassformerError
from glassformer.rasp import (
    LEQ, TRUE, Aggregate, Map, Maximum, Select, SelectorWidth, SequenceMap, indices, library, numerical, tokens,
)
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


def test_nonlinear_function_of_an_unlisted_number():
    tenth = numerical(Map(lambda t: 0.1 * (ord(t) - 96), tokens, name="tenth"))  # 0.1, 0.2, ...: float lattice
    mean = numerical(Aggregate(Select(indices, indices, LEQ), tenth, name="mean"))
    squared = numerical(Map(lambda m: m * m, mean, name="squared"))
    with pytest.raises(RaspCompileError, match=r"'squared'.*finite value set"):
        rasp.compile(squared, vocab="abc", max_len=8)
    linear = numerical(mean * 2 - 1).named("linear")  # an affine map needs no value list
    compiled = rasp.compile(linear, vocab="abc", max_len=8, approximate=True)
    assert compiled.run("abc") == pytest.approx([-0.8, -0.7, -0.6], abs=1e-5)


def test_categorical_function_of_an_unlisted_number():
    tenth = numerical(Map(lambda t: 0.1 * (ord(t) - 96), tokens, name="tenth"))
    mean = numerical(Aggregate(Select(indices, indices, LEQ), tenth, name="mean"))
    with pytest.raises(RaspCompileError, match="'positive'"):
        rasp.compile(Map(lambda m: m > 0.15, mean, name="positive"), vocab="abc", max_len=8)


def test_extreme_of_unlisted_numbers():
    tenth = numerical(Map(lambda t: 0.1 * (ord(t) - 96), tokens, name="tenth"))
    mean = numerical(Aggregate(Select(indices, indices, LEQ), tenth, name="mean"))
    top = Maximum(Select(indices, indices, TRUE), mean, name="top")
    with pytest.raises(RaspCompileError, match="'top'.*max needs the finite value set"):
        rasp.compile(numerical(top * 2), vocab="abc", max_len=8, approximate=True)


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
    tenth = numerical(Map(lambda t: 0.1 * (ord(t) - 96), tokens, name="tenth"))  # 0.1 is no short binary fraction
    mean = numerical(Aggregate(Select(indices, indices, LEQ), tenth, name="mean"))
    with pytest.raises(RaspCompileError, match="'mean'.*cannot be listed.*approximate=True"):
        rasp.compile(mean, vocab="abc", max_len=8)
    compiled = rasp.compile(mean, vocab="abc", max_len=8, approximate=True)
    for xs in ("a", "abc", "ccab"):
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
