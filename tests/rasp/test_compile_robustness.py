"""The compiler is never silently wrong and never leaks a raw exception: deep programs compile,
True is not 1, odd values and functions that always fail are refused naming the operation, and
where the interpreter rejects only some inputs the model's answer there is defined (no value)."""

import pytest

from glassformer import rasp
from glassformer.rasp import EQ, LEQ, Aggregate, Full, Map, Select, SelectorWidth, SequenceMap, indices, numerical, tokens
from glassformer.rasp.errors import RaspCompileError, RaspEvaluationError


@pytest.mark.parametrize("depth", [500, 1000])
def test_long_chains_of_maps_compile_correctly(depth):
    """Once: 500 chained Maps compiled to a model answering None everywhere (a RecursionError caught
    as if the function had failed), 1000 raised a raw RecursionError."""
    x = tokens
    for i in range(depth):
        x = Map(lambda v, i=i: v if i % 2 else v.upper() if v.islower() else v.lower(), x)
    compiled = rasp.compile(x, "ab", 4)
    assert compiled.run("abba") == rasp.evaluate(x, "abba") == list("abba")
    y = numerical(tokens)
    for _ in range(depth):
        y = numerical(y + 1)
    compiled = rasp.compile(y, [0, 1, 2], 4)
    assert compiled.run([0, 2, 1]) == rasp.evaluate(y, [0, 2, 1]) == [depth, depth + 2, depth + 1]
    assert compiled.summary()["layers"] == 1


def test_true_and_one_are_different_values():
    """Python says True == 1 and hash(True) == hash(1); the model once answered True where the
    interpreter said 1."""
    program = Map(lambda t: True if t == "a" else (1 if t == "b" else 0), tokens, name="flag")
    compiled = rasp.compile(program, "abc", 4)
    got = compiled.run("abca")
    assert got == rasp.evaluate(program, "abca") == [True, 1, 0, True]
    assert [type(v) for v in got] == [bool, int, int, bool]
    assert {"flag=True", "flag=1", "flag=0"} <= set(compiled.residual_labels)
    pair = SequenceMap(lambda t, i: (t == "a", i), tokens, indices, name="pair")  # inside tuples too
    same = Aggregate(Select(pair, Full((True, 1)), EQ), tokens, name="picked")
    compiled = rasp.compile(same, "ab", 3)
    assert compiled.run("bab") == rasp.evaluate(same, "bab") == ["a", "a", "a"]
    assert rasp.evaluate(same, "abb") == [None] * 3 == compiled.run("abb")
    prefix = Aggregate(Select(indices, indices, LEQ), program, name="prefix")  # True and 1 selected together:
    with pytest.raises(RaspEvaluationError, match=r"different values \(1, True\)"):  # ambiguous, not equal
        rasp.evaluate(prefix, "ab")


@pytest.mark.parametrize("program, message", [
    (Map(lambda t: [t], tokens, name="as_list"), r"'as_list'.*returned \['a'\] on 'a', a list: categorical values must be hashable"),
    (Map(lambda t: {t}, tokens, name="as_set"), r"'as_set'.*a set: categorical values must be hashable"),
    (SequenceMap(lambda a, b: (a, [b]), tokens, tokens, name="nested"), r"'nested'.*must be hashable"),
    (Map(lambda t: float("nan") if t == "a" else 1.0, tokens, name="nan"), r"'nan'.*NaN cannot be a categorical value"),
    (Full([1, 2], name="const_list"), r"'const_list'.*the constant \[1, 2\], a list"),
    (Aggregate(Select(tokens, tokens, EQ), tokens, default=[1], name="agg"), r"'agg'.*the default \[1\], a list"),
    (numerical(Map(lambda t: 1j, tokens, name="cplx")), r"'cplx'.*returned 1j on 'a', not a finite number"),
    (numerical(Map(lambda t: 10 ** 400, tokens, name="huge")), r"'huge'.*not a finite number"),
    (numerical(Map(lambda t: t + 0, tokens, name="str_plus")), r"'str_plus'.*TypeError: can only concatenate"),
    (Map(lambda t: 1 / 0, tokens, name="always"), r"'always'.*fails on every value.*ZeroDivisionError"),
    (SelectorWidth(Select(tokens, tokens, lambda k, q: 1 / 0), name="w"), r"'w'.*predicate fails on every key"),
])
def test_values_no_model_can_hold_and_functions_that_always_fail_are_refused(program, message):
    with pytest.raises(RaspCompileError, match=message):
        rasp.compile(program, "ab", 3)


def test_where_the_interpreter_rejects_some_inputs_the_model_outputs_no_value():
    """A function that fails on some values only: the interpreter raises on inputs holding them; the
    model outputs no value there (None, the zero vector) and the right value everywhere else."""
    inv = Map(lambda t: 1 / (t == "a"), tokens, name="inv")
    compiled = rasp.compile(inv, "ab", 3)
    assert compiled.run("ab") == [1.0, None] and compiled.run("aa") == rasp.evaluate(inv, "aa") == [1.0, 1.0]
    with pytest.raises(RaspEvaluationError, match="Map inv: its function raised ZeroDivisionError"):
        rasp.evaluate(inv, "ab")
    frac = numerical(Aggregate(Select(indices, indices, LEQ), numerical(Map(lambda t: t == "a", tokens))))
    recip = Map(lambda m: round(1 / m, 3), frac, name="recip")  # a step function of a number: 1/0 fails
    compiled = rasp.compile(recip, "ab", 4)
    assert compiled.run("ba") == [None, 2.0] and compiled.run("ab") == rasp.evaluate(recip, "ab") == [1.0, 2.0]
    picky = SelectorWidth(Select(tokens, tokens, lambda k, q: {"a": True, "b": False}[k] or q == "c"), name="picky")
    compiled = rasp.compile(picky, "abc", 3)  # the predicate fails on key "c": that key is not selected
    assert compiled.run("abc") == [1, 1, 2] and compiled.run("ab") == rasp.evaluate(picky, "ab") == [1, 1]
    with pytest.raises(RaspEvaluationError, match="picky|predicate"):
        rasp.evaluate(picky, "abc")


@pytest.mark.parametrize("causal", [False, True])
def test_a_head_whose_value_is_zero_for_every_token_compiles(causal):
    """frac_prevs("x") over a vocabulary without "x" averages marks that are 0 for every token: the head's
    value weights are all 0, and the sharpness stage once divided by that weight (a raw ZeroDivisionError)."""
    program = rasp.library.frac_prevs("x")
    for vocab, word in (("ab", "abba"), ("abx", "xbxa")):
        compiled = rasp.compile(program, vocab, 5, causal=causal)
        for n in range(1, 6):
            for xs in ([word[i % 4] for i in range(n)], [vocab[-1]] * n):
                assert compiled.run(xs) == rasp.evaluate(program, xs)
    assert rasp.evaluate(program, "abba") == [0, 0, 0, 0]
