"""Inputs to test library programs on: every sequence when that is few, otherwise random ones, with
structured extras (balanced brackets, well-formed sums) so that interesting outputs occur."""

from __future__ import annotations

import itertools
import random


def dyck_word(rng: random.Random, n: int, pairs: str) -> list[str]:
    """A random balanced (properly nested) bracket word of length n (n even)."""
    out, stack = [], []
    while len(out) < n:
        remaining = n - len(out)
        if stack and (remaining <= len(stack) or rng.random() < 0.5):
            out.append(stack.pop())
        else:
            k = 2 * rng.randrange(len(pairs) // 2)
            open_, close = pairs[k], pairs[k + 1]
            out.append(open_)
            stack.append(close)
    return out


def addition(rng: random.Random, max_len: int) -> list[str]:
    la = rng.randint(1, max(1, max_len - 2))
    lb = rng.randint(1, max(1, max_len - 1 - la))
    return list(f"{rng.randint(0, 10 ** la - 1)}+{rng.randint(0, 10 ** lb - 1)}")


def inputs_for(name: str, vocab, max_len: int, count: int = 200, seed: int = 0, exhaustive_limit: int = 1500) -> list:
    rng = random.Random(seed)
    vocab = list(vocab)
    if name == "long_addition":
        cases = [addition(rng, max_len) for _ in range(count)]
        return [c for c in cases if len(c) <= max_len]
    total = sum(len(vocab) ** n for n in range(1, max_len + 1))
    if total <= exhaustive_limit:
        cases = [list(x) for n in range(1, max_len + 1) for x in itertools.product(vocab, repeat=n)]
    else:
        cases = [[rng.choice(vocab) for _ in range(rng.randint(1, max_len))] for _ in range(count)]
        cases.append([vocab[0]] * max_len)  # selector widths up to N
        cases.append(list(itertools.islice(itertools.cycle(vocab), max_len)))
    if name in ("dyck1", "dyck2", "shuffle_dyck2"):
        pairs = "()" if name == "dyck1" else "(){}"
        for _ in range(count // 2):
            n = 2 * rng.randint(1, max_len // 2)
            word = dyck_word(rng, n, pairs)
            if rng.random() < 0.3:  # a near miss
                i, j = rng.randrange(n), rng.randrange(n)
                word[i], word[j] = word[j], word[i]
            cases.append(word)
    return cases
