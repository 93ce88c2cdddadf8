"""The compiled model's decoded output equals the interpreter's: every library program at N = 5, 10
and 32 (exhaustively where the inputs are few), long sequences (N = 64), large vocabularies (100
tokens), numerical maps with negative values, and selector widths up to N."""

import random

import pytest

from glassformer import rasp
from glassformer.rasp import (
    EQ, LEQ, LT, TRUE, Aggregate, Full, Map, Maximum, Minimum, Select, SelectorWidth, SequenceMap, indices, numerical,
    tokens,
)
from glassformer.rasp import library
from glassformer.rasp.errors import RaspEvaluationError

from rasp_inputs import inputs_for


def assert_exact(compiled, program, cases):
    """Every case the interpreter accepts decodes to the interpreter's output; returns how many ran."""
    outputs = compiled.run_batch(cases)
    checked = 0
    for xs, got in zip(cases, outputs):
        try:
            want = rasp.evaluate(program, xs)
        except RaspEvaluationError:
            continue
        assert got == want, f"{program.name} on {''.join(map(str, xs))}: model {got} != interpreter {want}"
        checked += 1
    return checked


@pytest.mark.parametrize("max_len", [5, 10, 32])
@pytest.mark.parametrize("name", sorted(library.PROGRAMS))
def test_library_program_exact(name, max_len):
    entry = library.PROGRAMS[name]
    program = entry.build()
    compiled = rasp.compile(program, vocab=entry.vocab, max_len=max_len)
    cases = inputs_for(name, entry.vocab, max_len, count=120 if max_len > 10 else 300)
    assert assert_exact(compiled, program, cases) >= min(len(cases), 50) * 0.5


@pytest.mark.parametrize("name", ["reverse", "histogram", "sort_unique", "frac_prevs", "dyck1", "shift_by"])
def test_long_sequences_n64(name):
    entry = library.PROGRAMS[name]
    program = entry.build()
    compiled = rasp.compile(program, vocab=entry.vocab, max_len=64)
    cases = inputs_for(name, entry.vocab, 64, count=60, seed=3)
    cases += [[entry.vocab[0]] * 64, [entry.vocab[-1]] * 63]
    assert assert_exact(compiled, program, cases) > 30


VOCAB100 = [f"t{i:02d}" for i in range(100)]


@pytest.mark.parametrize("name", ["reverse", "histogram", "sort_unique", "most_frequent", "running_max"])
def test_large_vocabulary(name):
    program = library.PROGRAMS[name].build()
    compiled = rasp.compile(program, vocab=VOCAB100, max_len=32)
    rng = random.Random(5)
    cases = [rng.sample(VOCAB100, rng.randint(1, 32)) for _ in range(40)]  # distinct tokens (sort_unique)
    cases += [[rng.choice(VOCAB100[:5]) for _ in range(rng.randint(1, 32))] for _ in range(40)]
    assert assert_exact(compiled, program, cases) >= 40


def test_numerical_maps_with_negative_values():
    value = numerical(Map(lambda t: int(t) - 5, tokens, name="shifted"))  # -5 .. 4
    mean = numerical(Aggregate(Select(indices, indices, LEQ), value, name="running_mean"))
    squared = numerical(Map(lambda m: round(m * m, 6) - 3, mean, name="squared"))  # a non-linear lookup
    sign = Map(lambda m: "neg" if m < 0 else ("zero" if m == 0 else "pos"), mean, name="sign")
    both = SequenceMap(lambda s, q: f"{s}:{q > 0}", sign, squared, name="both")
    vocab = [str(d) for d in range(10)]
    for program in (mean, squared, both):
        compiled = rasp.compile(program, vocab=vocab, max_len=8)
        rng = random.Random(1)
        cases = [[rng.choice(vocab) for _ in range(rng.randint(1, 8))] for _ in range(150)]
        assert assert_exact(compiled, program, cases) == len(cases)


def test_selector_width_up_to_n():
    for n in (10, 64):
        width = SelectorWidth(Select(tokens, tokens, EQ), name="same")
        compiled = rasp.compile(width, vocab="ab", max_len=n)
        assert compiled.run("a" * n) == [n] * n
        assert compiled.run("b" + "a" * (n - 1)) == [1] + [n - 1] * (n - 1)
        everything = SelectorWidth(Select(indices, indices, TRUE), name="n")
        assert rasp.compile(everything, vocab="ab", max_len=n).run("ab" * (n // 2)) == [n] * n


def test_constants_length_and_combined_selectors():
    prog = SequenceMap(lambda n, c: n * c, rasp.length, Full(3), name="triple_length")
    assert rasp.compile(prog, "ab", 6).run("abab") == [12] * 4
    odd_or_a = Select(indices, indices, lambda k, q: k % 2 == 1) | Select(tokens, Full("a"), EQ)
    picked = SelectorWidth(odd_or_a & ~Select(indices, indices, LT), name="picked")
    compiled = rasp.compile(picked, "ab", 6)
    assert assert_exact(compiled, picked, inputs_for("picked", "ab", 6)) > 100


def test_numerical_aggregate_of_non_binary_values_and_extremes():
    value = numerical(Map(lambda t: {"a": 1, "b": 3, "c": 7}[t], tokens, name="v"))
    mean = numerical(Aggregate(Select(indices, indices, LEQ), value, name="mean"))
    top = Maximum(Select(indices, indices, LEQ), value, name="top")
    low = Minimum(Select(tokens, tokens, EQ), indices, name="first_same")
    for program in (mean, top, low):
        compiled = rasp.compile(program, "abc", 6)
        assert assert_exact(compiled, program, inputs_for("x", "abc", 6)) > 1000
