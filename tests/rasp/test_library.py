"""Every library program agrees with a plain-Python reference, exhaustively on short inputs and on
random longer ones."""

import itertools
import random

import pytest

from glassformer import rasp
from glassformer.rasp import library

import rasp_references as ref

CASES = {  # name -> (reference, alphabet, input filter)
    "length": (ref.length, "abc", None),
    "reverse": (ref.reverse, "abcd", None),
    "histogram": (ref.histogram, "abcd", None),
    "double_histogram": (ref.double_histogram, "abcd", None),
    "sort_unique": (ref.sort, "abcdefgh", lambda xs: len(set(xs)) == len(xs)),
    "sort": (ref.sort, "abcd", None),
    "sort_by_frequency": (ref.sort_by_frequency, "abc", None),
    "most_frequent": (ref.most_frequent, "abc", None),
    "running_max": (ref.running_max, "abcd", None),
    "frac_prevs": (ref.frac_prevs, "xy", None),
    "dyck1": (ref.dyck1, "()", None),
    "dyck2": (ref.dyck2, "(){}", None),
    "shuffle_dyck2": (ref.shuffle_dyck, "(){}", None),
    "shift_by": (ref.shift_by, "abc", None),
    "detect_pattern": (ref.detect_pattern, "abc", None),
    "count_token": (ref.count_token, "abc", None),
    "nary_sequence_map": (ref.nary_sequence_map, (0, 1, 2, 3), None),
    "prefix_histogram": (ref.prefix_histogram, "abcd", None),
    "balanced_so_far": (ref.balanced_so_far, "()", None),
}


def test_every_library_program_has_a_case():
    assert set(CASES) | {"long_addition"} == set(library.PROGRAMS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_library_program_matches_reference(name):
    reference, alphabet, keep = CASES[name]
    program = library.get(name)
    inputs = [list(xs) for n in range(1, 6) for xs in itertools.product(alphabet, repeat=n)]
    rng = random.Random(0)
    inputs += [[rng.choice(alphabet) for _ in range(rng.randint(6, 16))] for _ in range(30)]
    if keep:
        inputs = [xs for xs in inputs if keep(xs)]
    for xs in inputs:
        assert rasp.evaluate(program, xs) == reference(xs), xs


def test_long_addition():
    program = library.long_addition()
    rng = random.Random(1)
    cases = ["0+0", "5+5", "999+1", "1+999", "683+345", "99999+1"]
    cases += [f"{rng.randint(0, 10**rng.randint(1, 6))}+{rng.randint(0, 10**rng.randint(1, 6))}" for _ in range(200)]
    for text in cases:
        assert rasp.evaluate(program, text) == ref.long_addition(text), text


def test_library_programs_have_explanatory_docstrings():
    for name, entry in library.PROGRAMS.items():
        assert entry.summary and len(entry.build.__doc__) > 80, name
        assert rasp.evaluate(entry.build(), entry.example)  # the example input runs


def test_unknown_program_name():
    with pytest.raises(rasp.RaspProgramError, match="no library program 'nope'"):
        library.get("nope")
