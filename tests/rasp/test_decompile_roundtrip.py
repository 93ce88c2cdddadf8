"""The round trip on compiled models (the decompiler's ground truth), for the readings that need more
than one table or comparison: Maximum / Minimum heads, MLPs that compute several maps side by side,
selectors over a set of key values.

Here: a documented subset of the library (the cheap programs that exercise each reading, at N = 16 with
fewer random inputs); ``bench/bench_decompile.py`` runs every library program on 2,000 random inputs and
every input up to 6 tokens (results in bench/results/decompile.md)."""

import numpy as np
import pytest

from glassformer import rasp
from glassformer.rasp import language as L
from glassformer.rasp.decompile import extreme
from glassformer.rasp.decompile import fit as F
from glassformer.rasp.decompile.roundtrip import round_trip

def suffix_min():
    """The smallest token from here to the end: one Minimum head over the keys k >= q."""
    return L.Minimum(L.Select(L.indices, L.indices, L.GEQ), L.tokens, name="suffix_min")


# name -> (program, vocabulary, the step kinds its decompiled program must hold).  most_frequent (Maximum
# count, then Minimum index, 4 layers) takes ~30-70 s here, so it runs in the bench only.
SUBSET = {
    "running_max": (rasp.library.running_max, "abcd", {"maximum"}),  # one Maximum head over k <= q
    "suffix_min": (suffix_min, "abcd", {"minimum"}),
    "count_token": (rasp.library.count_token, "abc", {"width"}),  # a selector over key values (key == 'a')
}


@pytest.mark.parametrize("name", list(SUBSET))
def test_round_trip_is_exact(name):
    build, vocab, kinds = SUBSET[name]
    result = round_trip(build(), vocab, max_len=16, short_len=6, n_random=300, n_inputs=800, n_match=200,
                        n_pairs=20)
    assert result["short"]["agree"] == 1.0, result["short"]  # every input of up to 6 tokens
    assert result["random"]["agree"] == 1.0, result["random"]
    assert kinds <= {s.kind for s in result["decompiled"].steps}


def test_parallel_maps_in_one_mlp_are_read_apart():
    """Two maps of one compiled layer (their MLPs packed into one) come back as two tables, each over
    its own input, and the program built on both is exact."""
    hist = rasp.library.histogram()
    n = rasp.library.length()
    odd = L.Map(lambda h: h % 2 == 1, hist, name="odd")
    big = L.Map(lambda m: m >= 3, n, name="big")
    program = L.SequenceMap(lambda a, b: "x" if a and b else ("y" if a else "z"), odd, big, name="out")
    result = round_trip(program, "abc", max_len=8, short_len=5, n_random=300, n_inputs=600, n_match=200,
                        n_pairs=20)
    assert result["short"]["agree"] == 1.0 and result["random"]["agree"] == 1.0
    layer0 = [s for s in result["decompiled"].steps if s.components == [("mlp", 0, 0)]]
    inputs = sorted(child.name for s in layer0 for child in s.expr.children)
    assert inputs == ["width_l0h0", "width_l0h1"], inputs  # odd over the histogram, big over the length


def test_care_mask_frees_the_keys_a_winner_beats():
    """At query 0 the winner is key 1 (rank 2): key 2 (rank 3) must not be selected, key 0 (rank 1)
    may go either way; a row with no winner must select no valued key."""
    q = np.array([0, 0, 0, 1, 1, 1])
    k = np.array([0, 1, 2, 0, 1, 2])
    cells = F.Cells(q, k, np.ones(6, bool), np.ones(2, bool))
    key_rank = np.array([1.0, 2.0, 3.0, 1.0, 2.0, -np.inf])
    y = np.array([False, True, False, False, False, False])
    care = extreme.care_mask(y, cells, key_rank, 2)
    assert care.tolist() == [False, True, True, True, True, False]
    assert extreme.winner_rank(y, cells, key_rank, 2).tolist() == [2.0, -np.inf]
