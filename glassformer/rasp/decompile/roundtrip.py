"""The round trip, the decompiler's ground truth: ``decompile(compile(p))`` against ``p`` itself.

    result = round_trip(rasp.library.reverse(), vocab="abcd")
    result["short"]["agree"], result["random"]["agree"]      # 1.0 and 1.0 when the program came back

``p`` and the decompiled program are both run by the interpreter, on every input of 1..``short_len``
tokens (a random ``max_exhaustive`` of them when there are more) and on ``n_random`` random inputs of
1..``max_len`` tokens.  Inputs on which ``p`` itself raises are left out (``p`` is undefined there).
"""

from __future__ import annotations

import itertools
import random
from typing import Sequence

from glassformer.rasp.decompile.faithful import run_program
from glassformer.rasp.decompile.fit import vkey


def agreement(original, decompiled, inputs: Sequence[list]) -> dict:
    """Per-position and per-input agreement of two programs on ``inputs`` (where the original is defined)."""
    n = hits = positions = pos_hits = 0
    for xs in inputs:
        want = run_program(original, xs)
        if want is None:
            continue
        got = run_program(decompiled, xs)
        n += 1
        same = [got is not None and vkey(a) == vkey(b) for a, b in zip(want, got or [None] * len(want))]
        hits += all(same)
        positions += len(same)
        pos_hits += sum(same)
    return {"inputs": n, "agree": hits / max(n, 1), "agree_position": pos_hits / max(positions, 1)}


def short_inputs(vocab: Sequence, short_len: int, max_exhaustive: int, seed: int = 0) -> tuple[list[list], bool]:
    """Every input of 1..``short_len`` tokens, or ``max_exhaustive`` random ones of them (then False)."""
    vocab = list(vocab)
    total = sum(len(vocab) ** n for n in range(1, short_len + 1))
    if total <= max_exhaustive:
        return [list(x) for n in range(1, short_len + 1) for x in itertools.product(vocab, repeat=n)], True
    rng = random.Random(seed)
    return [[rng.choice(vocab) for _ in range(rng.randint(1, short_len))] for _ in range(max_exhaustive)], False


def round_trip(program, vocab: Sequence | str, max_len: int = 16, short_len: int = 6, n_random: int = 2000,
               max_exhaustive: int = 20000, n_inputs: int = 2000, seed: int = 0, **options) -> dict:
    """Compile ``program`` for ``max_len``, decompile it, and compare the two programs (module docstring)."""
    from glassformer.rasp import compile as compile_program
    from glassformer.rasp.decompile import decompile

    vocab = list(vocab)
    compiled = compile_program(program, vocab=vocab, max_len=max_len)
    result = decompile(compiled, n_inputs=n_inputs, seed=seed, **options)
    short, exhaustive = short_inputs(vocab, min(short_len, max_len), max_exhaustive, seed)
    rng = random.Random(seed + 1)
    randoms = [[rng.choice(vocab) for _ in range(rng.randint(1, max_len))] for _ in range(n_random)]
    return {
        "decompiled": result,
        "short": {**agreement(program, result.program, short), "exhaustive": exhaustive, "max_len": short_len},
        "random": {**agreement(program, result.program, randoms), "max_len": max_len},
    }
