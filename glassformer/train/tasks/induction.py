"""Induction: random filler, a random sequence ``r``, then ``r`` again; predict the end of the repeat.

Each row is ``f r r`` for a random ``r`` of ``n`` letters, ``n`` drawn per row from ``min_length .. length``,
after ``2 (length - n)`` filler letters, so every row has ``2 * length`` tokens (``"kmdhacdhac"``: filler
``km``, ``r = dhac``). The answer is the last ``min_length - 1`` tokens of the repeat, which always lie in
the repeat after its first token: prompt ``"kmdhacd"``, answer ``"hac"``. Each answer token is the one that
followed the same token's earlier occurrence, which is what an induction head copies (Olsson et al. 2022).

Because ``n`` (how far back the earlier copy is) and the offset where ``r`` starts change from row to row,
a head that attends a fixed distance back cannot solve the task; only finding the earlier occurrence does.
(Format 1 repeated a fixed-length ``r`` at a fixed offset: models reached 100% by looking ``length - 1``
positions back and fell to chance on any other repeat length.) With ``min_length = length`` every row has the
same ``n``. With ``distinct=True`` (default) all letters of a row, filler included, are different, so each
earlier occurrence is unique and the task can be solved exactly.
"""

from __future__ import annotations

import torch

from glassformer.errors import ConfigError
from glassformer.train.tasks.base import LETTERS, Task, check_choice, check_int, randint
from glassformer.train.tokenizers import CharTokenizer


class Induction(Task):
    name = "induction"
    description = "filler, a random sequence, its repeat (lengths and offsets vary); loss on the repeat's end: kmdhacd -> hac"
    archs = ("decoder",)
    sep = ""  # no separator: the answer continues the repeat
    format_version = 2  # 1: a fixed-length repeat at a fixed offset (solvable by a fixed-offset head)

    def __init__(self, length: int = 8, min_length: int | None = None, vocab_size: int = 16, distinct: bool = True,
                 repeat_length: int | None = None, seed: int = 0):
        super().__init__(seed)
        self.length = check_int(self.name, "length", length, 2)
        self.min_length = check_int(self.name, "min_length", length // 2 + 1 if min_length is None else min_length, 2, length)
        self.vocab_size = check_int(self.name, "vocab_size", vocab_size, 2, len(LETTERS))  # letters used
        self.distinct = check_choice(self.name, "distinct", distinct, (False, True))
        if repeat_length is not None:
            check_int(self.name, "repeat_length", repeat_length, self.min_length, self.length)
        self.repeat_length = repeat_length  # every row's n (to score each repeat length alone); None: drawn
        needed = 2 * self.length - self.min_length  # letters in the row with the shortest r
        if distinct and vocab_size < needed:
            raise ConfigError(
                f"task {self.name!r}: distinct=True needs vocab_size >= 2 * length - min_length = {needed} (filler and "
                f"repeat all different), got vocab_size={vocab_size}, length={length}, min_length={self.min_length}"
            )
        self.answer_len = self.min_length - 1  # the last tokens of the repeat
        self.problem_len = 2 * self.length - self.answer_len
        self.tokenizer = CharTokenizer(LETTERS[:vocab_size])

    @property
    def options(self) -> dict:
        options = {"length": self.length, "min_length": self.min_length, "vocab_size": self.vocab_size,
                   "distinct": self.distinct, "seed": self.seed}
        return options if self.repeat_length is None else {**options, "repeat_length": self.repeat_length}

    def with_repeat_length(self, n: int) -> Induction:
        """The same task (same widths and vocabulary) with every row's repeat ``n`` long."""
        return Induction(self.length, self.min_length, self.vocab_size, self.distinct, repeat_length=n, seed=self.seed)

    def sample(self, batch_size, generator):
        L, width = self.length, 2 * self.length
        if self.repeat_length is not None:
            n = torch.full((batch_size,), self.repeat_length)  # [batch]
        else:
            n = randint(self.length - self.min_length + 1, (batch_size,), generator) + self.min_length  # [batch]
        if self.distinct:
            letters = torch.rand(batch_size, self.vocab_size, generator=generator).argsort(1)  # [batch, vocab] distinct
        else:
            letters = randint(self.vocab_size, (batch_size, width), generator)  # [batch, width]
        pos = torch.arange(width)  # [width]
        start = 2 * (L - n)[:, None]  # [batch, 1] where r begins (after the filler)
        in_repeat = pos[None] >= start + n[:, None]  # [batch, width] the second copy
        # column t reads letter t (filler and first copy), or, in the repeat, the letter n columns earlier
        source = torch.where(in_repeat, pos[None] - n[:, None], pos[None].expand(batch_size, -1))  # [batch, width]
        seq = letters.gather(1, source)  # [batch, width]
        return seq[:, : self.problem_len].clone(), seq[:, self.problem_len :].clone()


__all__ = ["Induction"]
