"""RASP: write a transformer's algorithm as a program, run it, and compile it into real weights.

    from glassformer import rasp
    program = rasp.library.reverse()
    rasp.evaluate(program, "abc")                      # ['c', 'b', 'a']
    compiled = rasp.compile(program, vocab="abc", max_len=8)
    compiled.run("abc")                                # ['c', 'b', 'a'], computed by a Transformer
    compiled.model                                     # a glassformer Transformer

See docs/rasp.md for the language, the library and the compiler's stages.
"""

from glassformer.rasp import library
from glassformer.rasp.errors import RaspCompileError, RaspError, RaspEvaluationError, RaspProgramError
from glassformer.rasp.interpreter import evaluate
from glassformer.rasp.language import (
    CATEGORICAL, EQ, FALSE, GEQ, GT, LEQ, LT, NE, NEQ, NUMERICAL, TRUE, Aggregate, Comparison, Full, Indices, Length,
    Map, Maximum, Minimum, Predicate, RASPExpr, Select, Selector, SelectorAnd, SelectorNot, SelectorOr,
    SelectorWidth, SequenceMap, SOp, Tokens, categorical, indices, length, numerical, tokens,
)
from glassformer.rasp.printing import to_code, to_dot, to_graph


def compile(program, vocab, max_len, **options):
    """Compile ``program`` into a glassformer Transformer; see :func:`glassformer.rasp.compiler.compile`."""
    from glassformer.rasp.compiler import compile as _compile

    return _compile(program, vocab=vocab, max_len=max_len, **options)


# Imported last, and as functions: each shares its name with its module (``rasp.task`` is the function).
from glassformer.rasp.task import task  # noqa: E402
from glassformer.rasp.decompile import decompile  # noqa: E402

__all__ = [
    "CATEGORICAL", "EQ", "FALSE", "GEQ", "GT", "LEQ", "LT", "NE", "NEQ", "NUMERICAL", "TRUE", "Aggregate",
    "Comparison", "Full", "Indices", "Length", "Map", "Maximum", "Minimum", "Predicate", "RASPExpr",
    "RaspCompileError", "RaspError", "RaspEvaluationError", "RaspProgramError", "Select", "Selector", "SelectorAnd",
    "SelectorNot", "SelectorOr", "SelectorWidth", "SequenceMap", "SOp", "Tokens", "categorical", "compile",
    "decompile", "evaluate", "indices", "length", "library", "numerical", "task", "to_code", "to_dot", "to_graph", "tokens",
]
