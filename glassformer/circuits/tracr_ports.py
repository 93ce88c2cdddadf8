"""Tracr's own library programs (``tracr/compiler/lib.py``, ported in ``glassformer.rasp.tracr_lib`` and written
with Tracr's API only) as suite members: each is built the way Tracr code builds it and compiled through Tracr's
entry point, ``rasp.tracr.compile_rasp_to_model`` (the causal ones into decoders, as Tracr's lib marks them).

    name -> (build(max_len) -> program, vocabulary, causal)

The vocabularies and arguments are those of Tracr's docstrings (and tests/rasp/test_tracr.py, which checks
every port against the outputs Tracr promises). Their ground truth is read from the weights and checked
causally like every other suite model's.
"""

from __future__ import annotations

from collections.abc import Callable

from glassformer.circuits.errors import CircuitsError
from glassformer.rasp import tracr as rasp
from glassformer.rasp import tracr_lib as lib

TRACR_PROGRAMS: dict[str, tuple[Callable[[int], object], list, bool]] = {
    "length": (lambda n: lib.make_length(), list("abc"), False),
    "reverse": (lambda n: lib.make_reverse(rasp.tokens), list("Helo"), False),
    "hist": (lambda n: lib.make_hist(), list("abc"), False),
    "sort_unique": (lambda n: lib.make_sort_unique(rasp.tokens, rasp.tokens), [1, 2, 3, 4], False),
    "sort": (lambda n: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=n, min_key=1), [1, 2, 3, 4], False),
    "sort_freq": (lambda n: lib.make_sort_freq(max_seq_len=n), [1, 2, 4], False),
    "pair_balance": (lambda n: lib.make_pair_balance(rasp.tokens, "(", ")"), list("()abc"), False),
    "shuffle_dyck2": (lambda n: lib.make_shuffle_dyck2(), list("(){}"), False),
    "frac_prevs": (lambda n: lib.make_frac_prevs(rasp.tokens == "l"), list("helo"), True),
    "shift_by": (lambda n: lib.shift_by(2, rasp.tokens), list("abc"), True),
    "detect_pattern": (lambda n: lib.detect_pattern(rasp.tokens, "abc"), list("abc"), True),
    "count_less_freq": (lambda n: lib.make_count_less_freq(2), list("abc"), False),
    "count": (lambda n: lib.make_count(rasp.tokens, "a"), list("abc"), False),
    "nary_sequencemap": (lambda n: lib.make_nary_sequencemap(lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens,
                                                             rasp.indices), [1, 2, 3], True),
}


def compile_tracr_port(name: str, max_len: int, vocab=None, causal: bool | None = None):
    """The CompiledModel of Tracr's program ``name`` at ``max_len`` (its Tracr vocabulary unless given)."""
    if name not in TRACR_PROGRAMS:
        raise CircuitsError(f"no Tracr library program {name!r}; ported: {', '.join(TRACR_PROGRAMS)}")
    build, default_vocab, default_causal = TRACR_PROGRAMS[name]
    model = rasp.compile_rasp_to_model(build(max_len), vocab=set(default_vocab if vocab is None else vocab),
                                       max_seq_len=max_len, causal=default_causal if causal is None else causal)
    return model.compiled
