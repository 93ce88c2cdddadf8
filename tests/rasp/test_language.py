"""The RASP language and interpreter: primitives, operators, selectors, aggregates, and their errors."""

import pytest

from glassformer import rasp
from glassformer.errors import GlassformerError
from glassformer.rasp import (
    EQ, FALSE, GEQ, GT, LEQ, LT, NE, TRUE, Aggregate, Full, Map, Maximum, Minimum, Select, SelectorWidth, SequenceMap,
    categorical, evaluate, indices, length, numerical, tokens,
)
from glassformer.rasp.errors import RaspEvaluationError, RaspProgramError


def test_primitives():
    assert evaluate(tokens, "abc") == ["a", "b", "c"]
    assert evaluate(indices, "abc") == [0, 1, 2]
    assert evaluate(length, "abcd") == [4, 4, 4, 4]
    assert evaluate(Full(7), "ab") == [7, 7]
    assert evaluate(tokens, []) == []


@pytest.mark.parametrize("pred, expected", [
    (EQ, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
    (NE, [[0, 1, 1], [1, 0, 1], [1, 1, 0]]),
    (LT, [[0, 0, 0], [1, 0, 0], [1, 1, 0]]),  # key < query
    (LEQ, [[1, 0, 0], [1, 1, 0], [1, 1, 1]]),
    (GT, [[0, 1, 1], [0, 0, 1], [0, 0, 0]]),
    (GEQ, [[1, 1, 1], [0, 1, 1], [0, 0, 1]]),
    (TRUE, [[1, 1, 1]] * 3),
    (FALSE, [[0, 0, 0]] * 3),
])
def test_select_matrix_is_predicate_of_key_and_query(pred, expected):
    assert evaluate(Select(indices, indices, pred), "abc") == [[bool(v) for v in row] for row in expected]


def test_built_in_predicates_are_one_table():
    from glassformer.rasp.language import COMPARISONS, CONSTANT_PREDICATES

    assert list(COMPARISONS) == ["EQ", "NE", "LT", "LEQ", "GT", "GEQ", "TRUE", "FALSE"] and rasp.NEQ is NE
    for name, predicate in COMPARISONS.items():
        assert getattr(rasp, name) is predicate and getattr(rasp.Comparison, name) is predicate
        assert predicate.name == repr(predicate) == name
        for key, query in [(1, 2), (2, 2), (3, 2)]:  # key <symbol> query
            written = predicate.symbol if predicate in CONSTANT_PREDICATES else f"{key} {predicate.symbol} {query}"
            assert predicate(key, query) == eval(written)
        assert rasp.to_code(Select(indices, tokens, predicate).named("s")) == f"s = Select(indices, tokens, {name})"


def test_operators_print_and_evaluate():
    x = numerical(Map(int, tokens)).named("x")
    d = (x - 2).named("d")
    for expr, code, expected in [
        (x + 1, "Map(lambda x: x + 1, x, encoding='numerical')", [2, 3, 4]),
        (10 - x, "Map(lambda x: 10 - x, x, encoding='numerical')", [9, 8, 7]),
        (x * indices, "SequenceMap(lambda x, y: x * y, x, indices)", [0, 2, 6]),
        (6 / x, "Map(lambda x: 6 / x, x, encoding='numerical')", [6.0, 3.0, 2.0]),
        (x // 2, "Map(lambda x: x // 2, x, encoding='numerical')", [0, 1, 1]),
        (x % 2, "Map(lambda x: x % 2, x, encoding='numerical')", [1, 0, 1]),
        (-x, "Map(lambda x: -x, x, encoding='numerical')", [-1, -2, -3]),
        (d & indices, "SequenceMap(lambda x, y: x and y, d, indices)", [False, False, True]),
        (0 | d, "Map(lambda x: 0 or x, d, encoding='numerical')", [True, False, True]),
        (~d, "Map(lambda x: not x, d, encoding='numerical')", [False, True, False]),
    ]:
        assert repr(expr) == f"{expr.name} = {code}"
        assert evaluate(expr, "123") == expected


def test_selector_combinators_and_user_predicate():
    a = Select(indices, indices, LEQ)
    b = Select(tokens, tokens, EQ)
    m_and = evaluate(a & b, "aba")
    m_or = evaluate(a | b, "aba")
    m_not = evaluate(~a, "aba")
    ma, mb = evaluate(a, "aba"), evaluate(b, "aba")
    assert m_and == [[x and y for x, y in zip(r, s)] for r, s in zip(ma, mb)]
    assert m_or == [[x or y for x, y in zip(r, s)] for r, s in zip(ma, mb)]
    assert m_not == [[not x for x in r] for r in ma]
    odd = Select(indices, indices, lambda k, q: (k + q) % 2 == 1)
    assert evaluate(odd, "abc")[0] == [False, True, False]


def test_none_is_never_selected_even_by_a_negation():
    shifted = Aggregate(Select(indices, indices, lambda k, q: q == k + 1), tokens)  # [None, a, b]
    sel = Select(shifted, shifted, EQ)
    assert evaluate(sel, "abb")[0] == [False, False, False]
    assert evaluate(~sel, "abb")[0] == [False, False, False]
    assert evaluate(~sel, "abb")[1] == [False, False, True]
    assert evaluate(Select(shifted, shifted, TRUE), "abb")[0] == [True, True, True]


def test_maps_and_operators():
    x = numerical(Map(lambda t: ord(t) - ord("a"), tokens))
    assert evaluate(x + 1, "abc") == [1, 2, 3]
    assert evaluate(2 * x - indices, "abc") == [0, 1, 2]
    assert evaluate(x + x, "abc") == [0, 2, 4]
    assert evaluate(-x, "abc") == [0, -1, -2]
    assert evaluate(SequenceMap(lambda a, b: f"{a}{b}", tokens, indices), "ab") == ["a0", "b1"]
    assert (x + 1).is_numerical and not (tokens + "!").is_numerical
    assert evaluate(tokens + "!", "ab") == ["a!", "b!"]


def test_aggregates():
    assert evaluate(Aggregate(Select(indices, indices, lambda k, q: k == 0), tokens), "xyz") == ["x"] * 3
    mean = numerical(Aggregate(Select(indices, indices, LEQ), numerical(Map(lambda t: int(t), tokens))))
    assert evaluate(mean, [2, 4, 0]) == [2.0, 3.0, 2.0]
    nothing = Aggregate(Select(indices, indices, FALSE), tokens)
    assert evaluate(nothing, "ab") == [None, None]
    assert evaluate(Aggregate(Select(indices, indices, FALSE), tokens, default="z"), "ab") == ["z", "z"]
    num_nothing = Aggregate(Select(indices, indices, FALSE), numerical(Map(float, indices)), default=-1)
    assert evaluate(num_nothing, "ab") == [-1, -1]
    assert evaluate(SelectorWidth(Select(tokens, tokens, EQ)), "abab") == [2, 2, 2, 2]
    assert evaluate(Maximum(Select(indices, indices, LEQ), tokens), "acb") == ["a", "c", "c"]
    assert evaluate(Minimum(Select(indices, indices, GEQ), tokens), "acb") == ["a", "b", "b"]


def test_maps_skip_none_inputs():
    shifted = Aggregate(Select(indices, indices, lambda k, q: q == k + 1), tokens)
    assert evaluate(Map(str.upper, shifted), "ab") == [None, "A"]
    assert evaluate(numerical(Map(lambda t: 5, shifted)), "ab") == [0, 5]


def test_names_and_printing():
    prog = rasp.library.reverse()
    assert prog.name == "reverse"
    code = rasp.to_code(prog)
    assert "opp_idx = SequenceMap(lambda n, i: n - 1 - i, length, indices)" in code
    assert code.strip().endswith("reverse = Aggregate(flip, tokens)")
    graph = rasp.to_graph(prog)
    assert "reverse [categorical]: Aggregate  <- flip, tokens" in graph
    assert rasp.to_dot(prog).startswith("digraph rasp {")
    assert repr(prog) == "reverse = Aggregate(flip, tokens)"
    renamed = tokens.named("my_tokens")
    assert renamed.name == "my_tokens" and tokens.name == "tokens"


# -- ill-formed programs get an error that names the operation ------------------------------------------

def test_categorical_mean_is_rejected():
    with pytest.raises(RaspProgramError, match="Aggregate avg: cannot take the mean of categorical SOp tokens"):
        Aggregate(Select(indices, indices, TRUE), tokens, encoding="numerical", name="avg")
    with pytest.raises(RaspProgramError, match="encoding follows"):
        numerical(Aggregate(Select(indices, indices, TRUE), tokens))


def test_type_mismatches_are_rejected():
    sel = Select(indices, indices, EQ)
    with pytest.raises(RaspProgramError, match="Map m: input must be a SOp.*got Select"):
        Map(lambda x: x, sel, name="m")
    with pytest.raises(RaspProgramError, match="selector argument must be a Selector"):
        Aggregate(tokens, tokens)
    with pytest.raises(RaspProgramError, match="must be a callable"):
        Map(3, tokens)
    with pytest.raises(RaspProgramError, match="Python identifier"):
        tokens.named("not a name")
    with pytest.raises(RaspProgramError, match="finite number"):
        Full("a", encoding="numerical")
    with pytest.raises(RaspProgramError, match="cannot combine"):
        tokens + sel
    assert issubclass(RaspProgramError, GlassformerError) and issubclass(RaspProgramError, ValueError)


def test_ambiguous_aggregate_names_operation_and_position():
    agg = Aggregate(Select(indices, indices, TRUE), tokens, name="pick")
    assert evaluate(agg, "aa") == ["a", "a"]
    with pytest.raises(RaspEvaluationError, match=r"Aggregate pick: at query position 0 .*'a', 'b'"):
        evaluate(agg, "ab")


def test_bad_numerical_values_and_raising_functions():
    with pytest.raises(RaspEvaluationError, match="Map word is numerical but produced 'a'"):
        evaluate(numerical(Map(lambda t: t, tokens, name="word")), "a")
    with pytest.raises(RaspEvaluationError, match=r"Map boom: its function raised ZeroDivisionError.*position 0"):
        evaluate(Map(lambda t: 1 / 0, tokens, name="boom"), "a")
    with pytest.raises(RaspEvaluationError, match="sequence of tokens"):
        evaluate(tokens, 5)
    with pytest.raises(RaspProgramError):
        evaluate("tokens", "abc")


def test_encoding_annotations_copy():
    t = numerical(tokens)
    assert t.is_numerical and not tokens.is_numerical and t.name == "tokens"
    assert evaluate(t, [1, 2]) == [1, 2]
    assert not categorical(t).is_numerical
