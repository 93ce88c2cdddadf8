"""Plain-Python answers for the library programs, written without RASP, to test the programs against."""

from __future__ import annotations

from collections import Counter


def length(xs):
    return [len(xs)] * len(xs)


def reverse(xs):
    return list(reversed(xs))


def histogram(xs):
    c = Counter(xs)
    return [c[x] for x in xs]


def double_histogram(xs):
    c = Counter(xs)
    per_count = Counter(c.values())
    return [per_count[c[x]] for x in xs]


def sort(xs):
    return sorted(xs)


def sort_by_frequency(xs):
    c = Counter(xs)
    return [x for _, x in sorted(((-c[x], i), x) for i, x in enumerate(xs))]


def most_frequent(xs):
    c = Counter(xs)
    best = max(c.values())
    first = next(x for x in xs if c[x] == best)
    return [first] * len(xs)


def running_max(xs):
    out, m = [], None
    for x in xs:
        m = x if m is None or x > m else m
        out.append(m)
    return out


def frac_prevs(xs, token="x"):
    out, count = [], 0
    for i, x in enumerate(xs):
        count += x == token
        out.append(count / (i + 1))
    return out


def _shuffle_ok(xs, pairs):
    for open_, close in pairs:
        depth = 0
        for x in xs:
            depth += (x == open_) - (x == close)
            if depth < 0:
                return False
        if depth:
            return False
    return True


def shuffle_dyck(xs, pairs=("()", "{}")):
    return [_shuffle_ok(xs, pairs)] * len(xs)


def dyck1(xs):
    return shuffle_dyck(xs, ("()",))


def dyck2(xs, pairs=("()", "{}")):
    closers = {p[1]: p[0] for p in pairs}
    stack, ok = [], True
    for x in xs:
        if x in closers:
            if not stack or stack.pop() != closers[x]:
                ok = False
                break
        elif any(x == p[0] for p in pairs):
            stack.append(x)
    return [ok and not stack] * len(xs)


def shift_by(xs, offset=1, default=None):
    return [xs[i - offset] if i >= offset else default for i in range(len(xs))]


def detect_pattern(xs, pattern="abc"):
    k = len(pattern)
    return [None if i < k - 1 else list(xs[i - k + 1:i + 1]) == list(pattern) for i in range(len(xs))]


def count_token(xs, token="a"):
    return [sum(x == token for x in xs)] * len(xs)


def nary_sequence_map(xs):
    return [a * i + a for i, a in enumerate(xs)]


def long_addition(text):
    a, b = text.split("+")
    total = str(int(a) + int(b)).rjust(len(text), "0")
    return list(total)


def prefix_histogram(xs):
    return [xs[: i + 1].count(x) for i, x in enumerate(xs)]


def balanced_so_far(xs, pairs=("()",)):
    out = []
    for i in range(len(xs)):
        prefix = xs[: i + 1]
        ok = True
        for open_, close in pairs:
            depth, never_negative = 0, True
            for x in prefix:
                depth += (x == open_) - (x == close)
                never_negative = never_negative and depth >= 0
            ok = ok and never_negative and depth == 0
        out.append(ok)
    return out
