"""Random well-typed RASP programs, drawn from a seed (the benchmark's second source of models).

The grammar is the one the compiler's property test draws (``tests/rasp/test_properties.py``), written
against a NumPy generator so that a suite is the same on every machine. A program starts from the
token's index in the vocabulary (categorical) and the positions, adds 1-4 operations, each reading
earlier ones:

    map       Map(f, cat)                    seqmap   SequenceMap(f, cat, cat)
    nummap    numerical(Map(f, cat | num))   copy     Aggregate(selector, cat, default None | 0)
    mean      numerical(Aggregate(selector, num))      width    SelectorWidth(selector)
    extreme   Maximum / Minimum(selector, cat)         const    SequenceMap(x + c, cat, Full(c))

selectors are Select(cat, cat, predicate), optionally combined with & | ~ with another. The output is
the last operation's result. ``random_program`` keeps drawing until the program compiles, runs at
least one attention head, and its output varies with the input (a constant output has no circuit).
"""

from __future__ import annotations

import numpy as np

from glassformer import rasp
from glassformer.rasp import (
    EQ, GEQ, GT, LEQ, LT, NE, TRUE, Aggregate, Full, Map, Maximum, Minimum, Select, SelectorWidth, SequenceMap,
    indices, numerical, tokens,
)
from glassformer.rasp.errors import RaspError

MAPS = [("(x+1)%4", lambda x: (x + 1) % 4), ("2x%5", lambda x: (2 * x) % 5), ("x//2", lambda x: x // 2),
        ("-x", lambda x: -x), ("x*x%7", lambda x: x * x % 7), ("x%2", lambda x: x % 2)]
SEQUENCE_MAPS = [("(x+y)%5", lambda x, y: (x + y) % 5), ("x-y", lambda x, y: x - y), ("max", max),
                 ("x==y", lambda x, y: int(x == y)), ("x*y%6", lambda x, y: x * y % 6)]
NUMERICAL_MAPS = [("2x-1", lambda x: 2 * x - 1), ("x*x", lambda x: x * x), ("x>0.5", lambda x: 1 if x > 0.5 else 0),
                  ("-x", lambda x: -x)]
PREDICATES = [EQ, NE, LT, LEQ, GT, GEQ, TRUE, ("(k+q)%2==0", lambda k, q: (k + q) % 2 == 0)]
KINDS = ["map", "seqmap", "nummap", "copy", "mean", "width", "extreme", "const"]


def draw_program(rng: np.random.Generator, vocab: list, name: str = "random"):
    """One random program over ``vocab`` (not yet checked to compile)."""
    vocab = list(vocab)
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    as_int = Map(lambda t, v=tuple(vocab): v.index(t), tokens, name="t")
    cat = [as_int, indices]
    num = [numerical(Map(lambda t, v=tuple(vocab): v.index(t), tokens, name="t_num"))]

    def predicate():
        p = pick(PREDICATES)
        return p[1] if isinstance(p, tuple) else p

    def selector():
        sel = Select(pick(cat), pick(cat), predicate())
        other = Select(pick(cat), pick(cat), predicate())
        how = pick(["plain", "and", "or", "not"])
        return {"plain": sel, "and": sel & other, "or": sel | other, "not": ~sel}[how]

    last = None
    for _ in range(int(rng.integers(1, 5))):
        kind = pick(KINDS)
        if kind == "map":
            cat.append(Map(pick(MAPS)[1], pick(cat)))
        elif kind == "seqmap":
            cat.append(SequenceMap(pick(SEQUENCE_MAPS)[1], pick(cat), pick(cat)))
        elif kind == "nummap":
            num.append(numerical(Map(pick(NUMERICAL_MAPS)[1], pick(cat + num))))
        elif kind == "copy":
            cat.append(Aggregate(selector(), pick(cat), default=pick([None, 0])))
        elif kind == "mean":
            num.append(numerical(Aggregate(selector(), pick(num))))
        elif kind == "width":
            cat.append(SelectorWidth(selector()))
        elif kind == "extreme":
            cat.append(pick([Maximum, Minimum])(selector(), pick(cat)))
        else:
            cat.append(SequenceMap(lambda x, c: x + c, pick(cat), Full(int(rng.integers(0, 3)))))
        last = cat[-1] if kind not in ("nummap", "mean") else num[-1]
    return (last if last is not None else cat[0]).named(name)


def random_program(seed: int, vocab, max_len: int, name: str | None = None, tries: int = 200):
    """(program, compiled) for the first draw from ``seed`` that compiles exactly, has an attention head,
    and whose output is not the same on every input."""
    from glassformer.circuits.inputs import decode_ids, sample_tokens

    rng = np.random.default_rng(seed)
    for _ in range(tries):
        program = draw_program(rng, vocab, name or f"random_{seed}")
        try:
            compiled = rasp.compile(program, vocab=vocab, max_len=max_len)
        except RaspError:
            continue
        if not any(b.kind == "attention" for b in compiled.blocks):
            continue
        toks, mask = sample_tokens(compiled, 64, np.random.default_rng(0))
        import torch

        with torch.no_grad():
            out = decode_ids(compiled, compiled.model(toks, attention_mask=mask)[:, 1:].float())
        real = mask[:, 1:].bool()
        if out[real].unique().numel() > 1:
            return program, compiled
    raise RaspError(f"no usable random program in {tries} draws from seed {seed}")
