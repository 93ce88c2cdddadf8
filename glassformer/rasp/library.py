"""A library of RASP programs, each explained the way a transformer runs it.

Every function returns a fresh program (a SOp) built from ``tokens`` and ``indices``; ``PROGRAMS``
lists them with a vocabulary and an example input, which the CLI (``glassformer rasp list``) and the
benchmark use.  "Layer" below means one attention sublayer plus one MLP sublayer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from glassformer.rasp.language import (
    EQ, GT, LEQ, LT, TRUE, Aggregate, Full, Map, Maximum, Minimum, Select, SelectorWidth, SequenceMap, SOp,
    indices, numerical, tokens,
)

# -- counting -------------------------------------------------------------------------------------


def length() -> SOp:
    """The sequence length n at every position.

    One attention head attends to every position (``Select(tokens, tokens, TRUE)``) and to the BOS token
    equally, so the weight left on BOS is 1/(n+1); the MLP behind it reads n off that number.
    """
    return SelectorWidth(Select(tokens, tokens, TRUE).named("all_true")).named("length")


def histogram(sop: SOp = tokens) -> SOp:
    """How many positions hold the same value as this one: "aabc" -> [2, 2, 1, 1].

    One head: each query attends to the keys with an equal token; SelectorWidth counts them (1 layer).
    """
    return SelectorWidth(Select(sop, sop, EQ)).named("hist")


def count_token(token: Any = "a", sop: SOp = tokens) -> SOp:
    """How many times ``token`` occurs in the sequence, at every position: "abca" -> [2, 2, 2, 2].

    One head whose keys are the positions holding ``token`` (the predicate ignores the query).
    """
    return SelectorWidth(Select(sop, sop, lambda key, query: key == token)).named(f"count_{_ident(token)}")


def prefix_histogram(sop: SOp = tokens) -> SOp:
    """How often this position's value has occurred so far, itself included: "abaa" -> [1, 1, 2, 3].

    The causal histogram: one head attends to the earlier-or-equal keys holding the same value
    (``Select(sop, sop, EQ) & Select(indices, indices, LEQ)``) and SelectorWidth counts them (1 layer).
    It looks only back, so it compiles into a decoder (``causal=True``).
    """
    same_so_far = Select(sop, sop, EQ) & Select(indices, indices, LEQ)
    return SelectorWidth(same_so_far).named("prefix_hist")


def double_histogram(sop: SOp = tokens) -> SOp:
    """For each position, how many *distinct* values occur as often as its own: "aabcd" -> [1, 1, 3, 3, 3].

    Layer 1, two heads in parallel: the histogram, and how many equal values come earlier (0 marks a
    value's first occurrence).  Layer 2: one head selects the first occurrences whose count equals the
    query's count, and SelectorWidth counts them.
    """
    hist = histogram(sop)
    earlier_same = SelectorWidth(Select(sop, sop, EQ) & Select(indices, indices, LT)).named("earlier_same")
    is_first = Map(lambda c: c == 0, earlier_same).named("is_first")
    same_count_first = Select(hist, hist, EQ) & Select(is_first, Full(True), EQ)
    return SelectorWidth(same_count_first).named("double_hist")


def frac_prevs(token: Any = "x", sop: SOp = tokens) -> SOp:
    """The fraction of positions up to and including this one that hold ``token``: "xyxx" -> [1, .5, .67, .75].

    A numerical Map marks the token with 1 (folded into the head's value matrix), then one head
    attends uniformly to positions k <= q and averages the marks (1 layer).
    """
    marks = numerical(Map(lambda x: 1 if x == token else 0, sop)).named(f"is_{_ident(token)}")
    return numerical(Aggregate(Select(indices, indices, LEQ), marks)).named("frac_prevs")


# -- moving values around -------------------------------------------------------------------------


def reverse(sop: SOp = tokens) -> SOp:
    """The sequence backwards: "abc" -> "cba".

    Layer 1: the length (attention to everything and BOS), and the MLP computes opp_idx = n - 1 - i.
    Layer 2: each query attends to the key whose index equals its opp_idx and copies its value.
    The paper's hand analysis also needs 2 layers.
    """
    n = length()
    opp_idx = SequenceMap(lambda n, i: n - 1 - i, n, indices).named("opp_idx")
    flip = Select(indices, opp_idx, EQ).named("flip")
    return Aggregate(flip, sop).named("reverse")


def shift_by(offset: int = 1, sop: SOp = tokens, default: Any = None) -> SOp:
    """The value ``offset`` positions earlier (``default`` where there is none): shift_by(1) "abc" -> [None, a, b].

    One head attends from query q to key q - offset (1 layer).
    """
    select_off = Select(indices, indices, lambda k, q: q == k + offset).named(f"select_shift{offset}")
    return Aggregate(select_off, sop, default=default).named(f"shift_by_{offset}")


def detect_pattern(pattern: Sequence = "abc", sop: SOp = tokens) -> SOp:
    """True where ``pattern`` ends at this position: pattern "ab" on "aab" -> [False, False, True]
    (None where the pattern would start before the sequence does).

    One head per pattern element reads the token ``len(pattern) - 1 - j`` positions back, its value
    matrix already testing "is it pattern[j]?" (a Map folded into W_V); one MLP ANDs the answers (1 layer).
    """
    pattern = list(pattern)
    if not pattern:
        raise ValueError("detect_pattern needs a non-empty pattern")
    detectors = []
    for j, element in enumerate(pattern):
        matches = Map(lambda x, e=element: x == e, sop).named(f"is_{_ident(element)}_{j}")
        back = len(pattern) - 1 - j
        detectors.append(matches if back == 0 else shift_by(back, matches).named(f"match_{j}"))
    result = detectors[0]
    for d in detectors[1:]:
        result = SequenceMap(lambda x, y: bool(x and y), result, d)
    return result.named("detect_pattern")


def nary_sequence_map(f: Callable[..., Any], *sops: SOp) -> SOp:
    """``f(x1[i], ..., xk[i])`` at every position, for any number of SOps.

    RASP's SequenceMap takes two SOps, so the inputs are packed into tuples by a chain of two-argument
    SequenceMaps and ``f`` is applied to the tuple; the compiler fuses the whole chain into one MLP,
    a lookup table over the combinations of input values.
    """
    if not sops:
        raise ValueError("nary_sequence_map needs at least one SOp")
    packed = Map(lambda x: (x,), sops[0]).named("pack_1")
    for j, sop in enumerate(sops[1:], start=2):
        packed = SequenceMap(lambda acc, x: acc + (x,), packed, sop).named(f"pack_{j}")
    return Map(lambda args: f(*args), packed).named("nary_map")


def _nary_default() -> SOp:
    """tokens * indices + tokens through :func:`nary_sequence_map`: one MLP over (token, index, token)
    that a chain of packing SequenceMaps fuses into (1 layer, no attention).
    """
    return nary_sequence_map(lambda a, b, c: a * b + c, tokens, indices, tokens)


# -- sorting --------------------------------------------------------------------------------------


def sort_unique(keys: SOp = tokens, vals: SOp | None = None) -> SOp:
    """``vals`` ordered by ``keys``, assuming the keys are all different: "dbca" -> "abcd".

    Layer 1: each query counts the keys smaller than its own (SelectorWidth), which is where its value
    belongs.  Layer 2: position p attends to the key whose target is p and copies its value.
    """
    vals = keys if vals is None else vals
    smaller = SelectorWidth(Select(keys, keys, LT)).named("smaller")
    target = Select(smaller, indices, EQ).named("to_target")
    return Aggregate(target, vals).named("sort")


def sort(keys: SOp = tokens, vals: SOp | None = None) -> SOp:
    """A stable sort that allows repeated keys: "dbcab" -> "abbcd".

    Layer 1, two heads: how many keys are smaller, and how many equal keys come earlier; the MLP adds
    the two counts into each position's target slot (and packs it with the key, see below).
    Layer 2: position p attends to the key whose target is p and copies its value.
    """
    vals = keys if vals is None else vals
    smaller = SelectorWidth(Select(keys, keys, LT)).named("smaller")
    earlier_equal = SelectorWidth(Select(keys, keys, EQ) & Select(indices, indices, LT)).named("earlier_equal")
    target = SequenceMap(lambda a, b: a + b, smaller, earlier_equal).named("target")
    return Aggregate(Select(target, indices, EQ), vals).named("sort")


def sort_by_frequency(sop: SOp = tokens) -> SOp:
    """The tokens reordered from most to least frequent, ties kept in input order: "abbcc" -> "bbcca".

    The histogram (layer 1) becomes the sort key -count, and the stable sort above runs on it.
    """
    neg_hist = Map(lambda c: -c, histogram(sop)).named("neg_hist")
    return sort(neg_hist, sop).named("sort_by_freq")


def most_frequent(sop: SOp = tokens) -> SOp:
    """The most frequent token (the earliest one on ties), at every position: "abbca" -> "aaaaa".

    Layer 1: the histogram.  Layer 2: a Maximum head finds the largest count; the MLP marks the
    positions holding it.  Layer 3: a Minimum head takes the smallest index among the marked positions.
    Layer 4: every position copies the token at that index.
    """
    hist = histogram(sop)
    top = Maximum(Select(hist, hist, TRUE), hist).named("max_count")
    is_top = SequenceMap(lambda h, m: h == m, hist, top).named("is_top")
    first_top = Minimum(Select(is_top, Full(True), EQ), indices).named("first_top")
    return Aggregate(Select(indices, first_top, EQ), sop).named("most_frequent")


def running_max(sop: SOp = tokens) -> SOp:
    """The largest value so far: "acbd" -> "accd".  One Maximum head over the keys k <= q (1 layer)."""
    return Maximum(Select(indices, indices, LEQ), sop).named("running_max")


# -- balanced parentheses -------------------------------------------------------------------------


def pair_balance(open_: str = "(", close: str = ")", sop: SOp = tokens) -> SOp:
    """(#open - #close) / (i + 1) over the prefix up to position i: how unbalanced the prefix is, per token.

    A numerical Map marks openers +1 and closers -1 (it folds into the head's value matrix); one head
    attends uniformly to the keys k <= q and averages the marks (1 layer).
    """
    marks = numerical(Map(lambda x: 1 if x == open_ else (-1 if x == close else 0), sop)).named(
        f"marks_{_ident(open_)}")
    return numerical(Aggregate(Select(indices, indices, LEQ), marks)).named(f"balance_{_ident(open_)}")


def shuffle_dyck(pairs: Sequence[str] = ("()", "{}"), sop: SOp = tokens) -> SOp:
    """True (at every position) iff, for each bracket pair on its own, no prefix closes more than it
    opened and the whole sequence closes all it opened.  Brackets of different pairs may interleave.

    Layer 1: one head per pair averages its +1/-1 marks over the prefix (the balance); another head
    finds the length.  The MLP reads each balance's sign: below zero, exactly zero.  Layer 2: a Maximum
    head per pair asks "was any prefix negative?", an Aggregate head reads "is the last prefix zero?";
    the MLP ANDs the answers.  2 layers.
    """
    n = length()
    everything = Select(indices, indices, TRUE).named("everything")
    last = Select(indices, Map(lambda x: x - 1, n).named("last_index"), EQ).named("select_last")
    good = None
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"shuffle_dyck: each pair must be two characters like '()', got {pair!r}")
        balance = pair_balance(pair[0], pair[1], sop)
        negative = Map(lambda b: b < 0, balance).named(f"negative_{_ident(pair[0])}")
        zero = Map(lambda b: b == 0, balance).named(f"zero_{_ident(pair[0])}")
        ever_negative = Maximum(everything, negative).named(f"ever_negative_{_ident(pair[0])}")
        ends_balanced = Aggregate(last, zero).named(f"ends_balanced_{_ident(pair[0])}")
        ok = SequenceMap(lambda neg, end: not neg and bool(end), ever_negative, ends_balanced)
        good = ok if good is None else SequenceMap(lambda a, b: bool(a and b), good, ok)
    return good.named("shuffle_dyck")


def balanced_so_far(pairs: Sequence[str] = ("()",), sop: SOp = tokens) -> SOp:
    """True where the prefix up to this position is balanced: "(()())" -> [F, F, F, F, F, T], and False
    from the first position where a prefix closes more than it opened.

    The causal Dyck check.  Layer 1: one head per pair averages the +1/-1 marks over the keys k <= q
    (the balance); the MLP reads its sign.  Layer 2: a Maximum head over k <= q asks "was any prefix
    negative?"; the MLP ANDs "never negative" with "balanced here".  Every selector looks only back, so
    it compiles into a decoder (``causal=True``).
    """
    so_far = Select(indices, indices, LEQ).named("so_far")
    good = None
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"balanced_so_far: each pair must be two characters like '()', got {pair!r}")
        balance = pair_balance(pair[0], pair[1], sop)
        negative = Map(lambda b: b < 0, balance).named(f"negative_{_ident(pair[0])}")
        zero = Map(lambda b: b == 0, balance).named(f"zero_{_ident(pair[0])}")
        ever_negative = Maximum(so_far, negative).named(f"ever_negative_{_ident(pair[0])}")
        ok = SequenceMap(lambda neg, z: not neg and bool(z), ever_negative, zero)
        good = ok if good is None else SequenceMap(lambda a, b: bool(a and b), good, ok)
    return good.named("balanced_so_far")


def dyck1() -> SOp:
    """Dyck-1: balanced round brackets "(())()" (shuffle_dyck with the single pair "()")."""
    return shuffle_dyck(("()",)).named("dyck1")


def shuffle_dyck2() -> SOp:
    """Shuffle-Dyck-2: "()" and "{}" each balanced on its own, interleaving allowed ("({)}" is in)."""
    return shuffle_dyck(("()", "{}")).named("shuffle_dyck2")


def dyck2(pairs: Sequence[str] = ("()", "{}"), sop: SOp = tokens) -> SOp:
    """Dyck-2: properly nested brackets of two kinds ("({})" is in, "({)}" is not), True at every position.

    Layer 1: two heads count the openers and closers up to each position (SelectorWidth); the MLP
    reads the counts.  Layer 2's MLP turns them into each bracket's nesting level (an opener's level
    after it opens, a closer's before it closes) and packs (index, kind) for the openers.  Layer 3: a
    Maximum head gives every closer its partner, the latest earlier opener at its own level, with that
    opener's kind; the MLP flags closers whose partner is missing or of the wrong kind.  Layer 4: a
    Maximum head asks "any flag anywhere?" and another head reads the depth at the last position.
    """
    opens = {p[0]: p[1] for p in pairs}
    closers = {p[1]: p[0] for p in pairs}
    is_open = Map(lambda x: x in opens, sop).named("is_open")
    is_close = Map(lambda x: x in closers, sop).named("is_close")
    upto = Select(indices, indices, LEQ)
    n_open = SelectorWidth(upto & Select(is_open, Full(True), EQ)).named("n_open")
    n_close = SelectorWidth(upto & Select(is_close, Full(True), EQ)).named("n_close")
    depth = SequenceMap(lambda o, c: o - c, n_open, n_close).named("depth")  # after this position
    level = SequenceMap(lambda d, x: d if x in opens else (d + 1 if x in closers else None), depth, sop).named("level")
    opener = SequenceMap(lambda i, x: (i, x) if x in opens else None, indices, sop).named("opener")
    earlier_same_level = Select(indices, indices, LT) & Select(level, level, EQ)
    # None values (positions that are not openers) never win a Maximum; no partner at all gives (-1, "").
    partner = Maximum(earlier_same_level, opener, default=(-1, "")).named("partner")
    mismatch = SequenceMap(lambda x, p: x in closers and closers[x] != p[1], sop, partner).named("mismatch")
    any_mismatch = Maximum(Select(indices, indices, TRUE), mismatch, default=False).named("any_mismatch")
    n = length()
    final_depth = Aggregate(Select(indices, Map(lambda x: x - 1, n).named("last_index"), EQ), depth).named("final_depth")
    return SequenceMap(lambda m, d: not m and d == 0, any_mismatch, final_depth).named("dyck2")


# -- arithmetic -----------------------------------------------------------------------------------


def long_addition(sop: SOp = tokens) -> SOp:
    """The sum of two numbers written as text, "683+345", as digits right-aligned under the input with
    leading zeros: "683+345" -> "0001028" (position i holds the digit of place n-1-i).

    Layer 1: one head finds where '+' is, another the length; the MLP gives every position the place it
    writes (n-1-i) and every digit of the first number the place it holds (plus-1-k).  Layer 2: each
    position reads the first number's digit at its place (a head matching places) and the second
    number's (its own token, if it lies after '+'); the MLP adds them into a column sum s (0..18) and,
    beside it, packs "2*i + (s >= 10)".  Layer 3: a Minimum head finds the nearest column to the right
    whose sum is not 9 -- the carry into this column is whether that column overflowed; the MLP writes
    (s + carry) % 10.
    """
    digit = {str(d): d for d in range(10)}
    plus = Aggregate(Select(sop, sop, lambda k, q: k == "+"), indices).named("plus")
    n = length()
    place = SequenceMap(lambda n, i: n - 1 - i, n, indices).named("place")
    a_place = SequenceMap(lambda p, k: p - 1 - k if k < p else None, plus, indices).named("a_place")
    after_plus = SequenceMap(lambda p, k: k > p, plus, indices).named("after_plus")
    a_digit = Aggregate(Select(a_place, place, EQ), sop, default="0").named("a_digit")
    b_digit = Aggregate(Select(indices, indices, EQ) & Select(after_plus, Full(True), EQ), sop,
                        default="0").named("b_digit")
    column = SequenceMap(lambda a, b: digit.get(a, 0) + digit.get(b, 0), a_digit, b_digit).named("column")
    packed = nary_sequence_map(lambda a, b, i: 2 * i + (1 if digit.get(a, 0) + digit.get(b, 0) >= 10 else 0),
                               a_digit, b_digit, indices).named("packed")
    right_not_nine = Select(indices, indices, GT) & Select(column, Full(True), lambda k, q: k != 9)
    nearest = Minimum(right_not_nine, packed, default=0).named("nearest_not_nine")
    return SequenceMap(lambda s, m: str((s + m % 2) % 10), column, nearest).named("long_addition")


def _ident(x: Any) -> str:
    text = str(x)
    if text.isidentifier():
        return text
    return "".join(c if c.isalnum() else f"x{ord(c):02x}" for c in text)


# -- the catalogue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A library program with a vocabulary to compile it over and an example input."""

    name: str
    build: Callable[[], SOp]
    vocab: tuple
    example: str | tuple
    summary: str
    causal: bool = False  # every selector looks only back: compiles with causal=True (into a decoder)

    def input_of(self, text: str) -> list:
        """Parse a command-line input for this program: characters, or space-separated ints."""
        if all(isinstance(v, int) for v in self.vocab):
            return [int(t) for t in text.replace(",", " ").split()]
        return list(text)


def _entry(name: str, build: Callable[[], SOp], vocab, example, causal: bool = False) -> Entry:
    doc = (build.__doc__ or "").strip().split("\n\n")[0]
    return Entry(name, build, tuple(vocab), example, " ".join(doc.split()), causal)


PROGRAMS: dict[str, Entry] = {e.name: e for e in [
    _entry("length", length, "abc", "abca"),
    _entry("reverse", reverse, "abcd", "abcd"),
    _entry("histogram", histogram, "abcd", "aabcd"),
    _entry("double_histogram", double_histogram, "abcd", "aabcd"),
    _entry("sort_unique", sort_unique, "abcdefgh", "dbca"),
    _entry("sort", sort, "abcd", "dbcab"),
    _entry("sort_by_frequency", sort_by_frequency, "abc", "abbcc"),
    _entry("most_frequent", most_frequent, "abc", "abbca"),
    _entry("running_max", running_max, "abcd", "acbd", causal=True),
    _entry("frac_prevs", frac_prevs, "xy", "xyxx", causal=True),
    _entry("dyck1", dyck1, "()", "(())()"),
    _entry("dyck2", dyck2, "(){}", "({}){}"),
    _entry("shuffle_dyck2", shuffle_dyck2, "(){}", "({)}"),
    _entry("shift_by", shift_by, "abc", "abcab", causal=True),
    _entry("detect_pattern", detect_pattern, "abc", "aabcab", causal=True),
    _entry("count_token", count_token, "abc", "abca"),
    _entry("nary_sequence_map", _nary_default, (0, 1, 2, 3), (1, 2, 3), causal=True),
    _entry("prefix_histogram", prefix_histogram, "abcd", "abaa", causal=True),
    _entry("balanced_so_far", balanced_so_far, "()", "(()())", causal=True),
    _entry("long_addition", long_addition, "0123456789+", "683+345"),
]}


def names() -> list[str]:
    return list(PROGRAMS)


def get(name: str) -> SOp:
    """Build the library program called ``name``."""
    from glassformer.rasp.errors import RaspProgramError

    if name not in PROGRAMS:
        raise RaspProgramError(f"no library program {name!r}; available: {', '.join(PROGRAMS)}")
    return PROGRAMS[name].build()
