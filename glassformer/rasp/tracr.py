"""Programs written for Tracr, unmodified: ``from glassformer.rasp import tracr as rasp``.

Tracr (Lindner et al. 2023, *Tracr: Compiled Transformers as a Laboratory for Interpretability*) is
DeepMind's RASP compiler; it runs on JAX and has not been maintained since 2024.  This module offers
the names of ``tracr.rasp.rasp`` with Tracr's behaviour where it differs from glassformer's language,
so existing Tracr programs and suites run and compile here:

    from glassformer.rasp import tracr as rasp

    opp_idx = (rasp.length - rasp.indices).named("opp_idx")          # Tracr code, as written
    flip = rasp.Select(rasp.indices, opp_idx - 1, rasp.Comparison.EQ)
    reverse = rasp.Aggregate(flip, rasp.tokens).named("reverse")
    reverse("abc")                                                     # ['c', 'b', 'a']: a SOp is callable
    model = rasp.compile_rasp_to_model(reverse, vocab={"a", "b", "c"}, max_seq_len=5)
    model.apply(["BOS", "a", "b", "c"]).decoded                        # ['BOS', 'c', 'b', 'a']

Every class here *is* the glassformer class (a subclass adding Tracr's operators), so a program built
with it goes straight into :func:`glassformer.rasp.compile` and :func:`glassformer.rasp.evaluate`.
What Tracr does differently, and what this module keeps (docs/rasp_tracr.md lists every difference):

* comparisons build Maps: ``sop == "a"``, ``sop < 3`` are ``Map(lambda x: x == "a", sop)``, as in
  Tracr (glassformer's own SOps keep Python's ``==``);  ``&``, ``|``, ``~`` are Python's
  ``and``, ``or``, ``not``; every operator's result is categorical unless wrapped in ``numerical``;
* ``.named``, ``numerical`` and ``categorical`` annotate the expression in place and return it;
  names need not be identifiers (``"shift_by(1)"``: the label becomes ``shift_by_1_``);
* predicates are called ``predicate(key, query)`` (the same order as glassformer's);
* ``Comparison.NEQ``, ``LinearSequenceMap``, ``ConstantSOp``, ``Encoding``, ``is_numerical`` exist.
"""

from __future__ import annotations

import enum
import keyword
import operator
from typing import Any, Callable, Sequence

from glassformer.rasp import language as L
from glassformer.rasp.errors import RaspCompileError
from glassformer.rasp.interpreter import evaluate

__all__ = [
    "Aggregate", "Comparison", "ConstantSOp", "Encoding", "Full", "LinearSequenceMap", "Map", "RASPExpr", "SOp",
    "Select", "Selector", "SelectorAnd", "SelectorNot", "SelectorOr", "SelectorWidth", "SequenceMap", "TracrModel",
    "annotate", "categorical", "compile_rasp_to_model", "evaluate", "get_encoding", "indices", "is_categorical",
    "is_numerical", "length", "numerical", "selector_and", "selector_not", "selector_or", "tokens",
]

RASPExpr = L.RASPExpr


class Encoding(enum.Enum):
    """Tracr's encoding annotation: ``rasp.get_encoding(sop) is rasp.Encoding.NUMERICAL``."""

    CATEGORICAL = L.CATEGORICAL
    NUMERICAL = L.NUMERICAL


# -- Tracr's operators on SOps ---------------------------------------------------------------------


def _label(name: Any) -> str:
    """A glassformer label (a Python identifier) for any Tracr name."""
    text = "".join(c if c.isalnum() or c == "_" else "_" for c in str(name)) or "sop"
    return f"_{text}" if text[0].isdigit() or keyword.iskeyword(text) else text


class _Tracr:
    """Mixin: Tracr's operators and in-place annotations on glassformer expressions."""

    __hash__ = object.__hash__  # SOps stay dict keys although == builds a Map

    def named(self, name: str):
        """Name this expression in place and return it (Tracr's ``annotate``)."""
        self._name = _label(name)
        self.tracr_name = str(name)
        return self

    def annotated(self, **annotations):
        return annotate(self, **annotations)

    @property
    def annotations(self) -> dict:
        out = {"name": self.name}
        if isinstance(self, L.SOp):
            out["encoding"] = Encoding(self.encoding)
        return out

    @property
    def label(self) -> str:
        return self.name

    def __call__(self, xs: Sequence):
        """Evaluate on ``xs`` (Tracr's ``sop(xs)``)."""
        return evaluate(self, xs)


class _TracrSOp(_Tracr):
    def _compare(self, fn: Callable, symbol: str, other: Any) -> Map:
        return Map(L._Op1(fn, symbol, other), self)  # prints as ``lambda x: x == 'a'``

    def __eq__(self, other): return self._compare(operator.eq, "==", other)  # noqa: E704
    def __ne__(self, other): return self._compare(operator.ne, "!=", other)  # noqa: E704
    def __lt__(self, other): return self._compare(operator.lt, "<", other)  # noqa: E704
    def __le__(self, other): return self._compare(operator.le, "<=", other)  # noqa: E704
    def __gt__(self, other): return self._compare(operator.gt, ">", other)  # noqa: E704
    def __ge__(self, other): return self._compare(operator.ge, ">=", other)  # noqa: E704
    def __invert__(self): return Map(L._Op1(operator.not_, "not", None, unary=True), self)  # noqa: E704
    def __neg__(self): return Map(L._Op1(operator.neg, "-", None, unary=True), self)  # noqa: E704

    # ``x <op> y``: a SequenceMap with another SOp, a Map with a constant; categorical (Tracr's default).
    def _binary(self, other: Any, fn: Callable, symbol: str, reflected: bool = False) -> L.SOp:
        if isinstance(other, L.SOp):
            a, b = (other, self) if reflected else (self, other)
            return SequenceMap(L._Op2(fn, symbol), a, b)
        return Map(L._Op1(fn, symbol, other, reflected), self)


def _and(x, y):
    return x and y


def _or(x, y):
    return x or y


for _symbol, _fn in {"and": _and, "or": _or}.items():
    _method, _reflected = L._arithmetic(_fn, _symbol)
    setattr(_TracrSOp, f"__{_symbol}__", _method)
    setattr(_TracrSOp, f"__r{_symbol}__", _reflected)
del _symbol, _fn, _method, _reflected

# -- the expressions ------------------------------------------------------------------------------


class SOp(_TracrSOp, L.SOp):
    """Tracr's SOp base class (for ``isinstance`` checks)."""


class _TokensType(_TracrSOp, L.Tokens):
    pass


class _IndicesType(_TracrSOp, L.Indices):
    pass


class _LengthType(_TracrSOp, L.Length):
    pass


tokens, indices, length = _TokensType(), _IndicesType(), _LengthType()


class Map(_TracrSOp, L.Map):
    """``Map(f, inner, simplify=True)``; ``simplify`` is accepted and ignored (the compiler fuses Maps)."""

    def __init__(self, f: Callable, inner: L.SOp, simplify: bool = True):
        super().__init__(f, inner)


class SequenceMap(_TracrSOp, L.SequenceMap):
    def __init__(self, f: Callable, fst: L.SOp, snd: L.SOp):
        super().__init__(f, fst, snd)


class _Linear:
    """``fst_fac * x + snd_fac * y`` as a callable the compiler can see is linear."""

    def __init__(self, fst_fac: float, snd_fac: float):
        self.fst_fac, self.snd_fac = fst_fac, snd_fac
        self.linear = (0.0, float(fst_fac), float(snd_fac))  # read by the compiler's graph stage

    def __call__(self, x, y):
        return self.fst_fac * x + self.snd_fac * y

    @property
    def source(self) -> str:
        return f"lambda x, y: {self.fst_fac!r} * x + {self.snd_fac!r} * y"


class LinearSequenceMap(SequenceMap):
    """``fst_fac * fst + snd_fac * snd``, position by position."""

    def __init__(self, fst: L.SOp, snd: L.SOp, fst_fac: float, snd_fac: float):
        super().__init__(_Linear(fst_fac, snd_fac), fst, snd)
        self.fst_fac, self.snd_fac = fst_fac, snd_fac


class Full(_TracrSOp, L.Full):
    """``Full(fill)``: the constant ``fill`` at every position."""

    def __init__(self, fill: Any):
        super().__init__(fill)

    @property
    def fill(self):
        return self.value


class ConstantSOp(Map):
    """``ConstantSOp(value)``: ``value[i]`` at position i (None past its end), a Map of ``indices``.
    Tracr's ``check_length`` (that inputs are exactly ``len(value)`` long) is not checked."""

    def __init__(self, value: Sequence, check_length: bool = True):
        values = list(value)
        super().__init__(lambda i: values[i] if i < len(values) else None, indices)
        self.value, self.check_length = values, check_length


class Select(_Tracr, L.Select):
    """``Select(keys, queries, predicate)``: selected where ``predicate(key, query)``."""


class SelectorWidth(_TracrSOp, L.SelectorWidth):
    def __init__(self, selector: L.Selector):
        super().__init__(selector)


class SelectorAnd(_Tracr, L.SelectorAnd):
    pass


class SelectorOr(_Tracr, L.SelectorOr):
    pass


class SelectorNot(_Tracr, L.SelectorNot):
    pass


def selector_and(fst, snd, simplify: bool = True):
    return SelectorAnd(fst, snd)


def selector_or(fst, snd, simplify: bool = True):
    return SelectorOr(fst, snd)


def selector_not(inner, simplify: bool = True):
    return SelectorNot(inner)


Selector = L.Selector
for _cls in (Select, SelectorAnd, SelectorOr, SelectorNot):
    _cls.__and__ = lambda self, other: SelectorAnd(self, other)
    _cls.__rand__ = lambda self, other: SelectorAnd(other, self)
    _cls.__or__ = lambda self, other: SelectorOr(self, other)
    _cls.__ror__ = lambda self, other: SelectorOr(other, self)
    _cls.__invert__ = lambda self: SelectorNot(self)
del _cls


class Aggregate(_TracrSOp, L.Aggregate):
    """``Aggregate(selector, sop, default=None)``: its encoding follows ``sop``'s; ``numerical(...)``
    around it only confirms that (Tracr annotates the Aggregate itself)."""

    def __init__(self, selector: L.Selector, sop: L.SOp, default: Any = None):
        super().__init__(selector, sop, default)


class Comparison:
    """Tracr's predicates: ``Comparison.EQ``, ``LT``, ``LEQ``, ``GT``, ``GEQ``, ``NEQ``, ``TRUE``, ``FALSE``,
    called as ``predicate(key, query)``."""

    EQ, LT, LEQ, GT, GEQ, NEQ, TRUE, FALSE = L.EQ, L.LT, L.LEQ, L.GT, L.GEQ, L.NE, L.TRUE, L.FALSE


# -- annotations ----------------------------------------------------------------------------------


def annotate(expr, **annotations):
    """Set ``name`` and / or ``encoding`` on ``expr`` in place; returns ``expr``."""
    for key, value in annotations.items():
        if key == "name":
            _Tracr.named(expr, value)
        elif key == "encoding":
            _set_encoding(expr, Encoding(value).value)
        else:
            raise L.RaspProgramError(f"annotation {key!r} is not one glassformer knows (name, encoding)")
    return expr


def numerical(sop):
    """Mark ``sop`` numerical (in place, as Tracr does) and return it."""
    return _set_encoding(sop, L.NUMERICAL)


def categorical(sop):
    """Mark ``sop`` categorical (in place) and return it."""
    return _set_encoding(sop, L.CATEGORICAL)


def _set_encoding(sop, encoding: str):
    new = L._with_encoding(sop, encoding)  # checks it, and converts a Full's value or a default
    sop.encoding = new.encoding
    for attr in ("value", "default"):
        if isinstance(sop, (L.Full, L.Aggregate, L.Maximum)) and hasattr(new, attr):
            setattr(sop, attr, getattr(new, attr))
    return sop


def get_encoding(sop) -> Encoding:
    return Encoding(sop.encoding)


def is_numerical(sop) -> bool:
    return sop.encoding == L.NUMERICAL


def is_categorical(sop) -> bool:
    return sop.encoding == L.CATEGORICAL


# -- the compiler's entry point -------------------------------------------------------------------


class TracrOutput:
    """What Tracr's ``model.apply`` returns, as far as programs use it: ``decoded``, one value per
    input position, the BOS position included (it decodes to the BOS token, as in Tracr)."""

    def __init__(self, decoded: list):
        self.decoded = decoded


class TracrModel:
    """A compiled program with Tracr's ``apply(["BOS", x1, ..., xn])``; everything else is the
    :class:`~glassformer.rasp.compiler.CompiledModel` (``.model`` is the glassformer Transformer)."""

    def __init__(self, compiled, compiler_bos: str):
        self.compiled, self.compiler_bos = compiled, compiler_bos

    def apply(self, tokens: Sequence) -> TracrOutput:
        tokens = list(tokens)
        if not tokens or tokens[0] != self.compiler_bos:
            raise L.RaspProgramError(f"apply() needs the input to start with the BOS token "
                                     f"{self.compiler_bos!r}, as Tracr's does, got {tokens[:1]}")
        return TracrOutput([self.compiler_bos] + self.compiled.run(tokens[1:]))

    def __getattr__(self, name):
        return getattr(self.compiled, name)


def compile_rasp_to_model(program: L.SOp, vocab, max_seq_len: int, causal: bool = False,
                          compiler_bos: str = "compiler_bos", compiler_pad: str = "compiler_pad",
                          mlp_exactness: int = 100, **options) -> TracrModel:
    """Tracr's ``compiler.compiling.compile_rasp_to_model``, compiling with glassformer.

    ``vocab`` is a set (sorted here, so the token ids are reproducible); ``max_seq_len`` excludes BOS, as
    in Tracr; ``causal=True`` builds a decoder.  ``compiler_pad`` and ``mlp_exactness`` are accepted and
    unused (glassformer's MLPs are exact lookup tables).  ``options`` go to :func:`glassformer.rasp.compile`.
    """
    from glassformer.rasp.compiler import compile as _compile

    if compiler_bos in vocab or compiler_pad in vocab:
        raise RaspCompileError(getattr(program, "name", "program"), f"the vocabulary contains the BOS / PAD token "
                                                                    f"{compiler_bos!r} / {compiler_pad!r}")
    try:
        tokens_ = sorted(vocab)
    except TypeError:
        tokens_ = list(vocab)
    compiled = _compile(program, tokens_, max_seq_len, causal=causal, **options)
    return TracrModel(compiled, compiler_bos)
