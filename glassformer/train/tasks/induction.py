"""Induction: a random sequence, then the same sequence again; predict the repeat.

Decoder sequence ``r r`` for a random ``r`` of ``length`` letters (``"dhacgfbedhacgfbe"``). The
repeat's first token cannot be predicted (nothing says where the repeat starts but its position),
so the prompt is ``r`` plus the repeat's first token, and the loss counts on the rest of the repeat:
prompt ``"dhacgfbed"``, answer ``"hacgfbe"``. Each of those tokens follows the same token's earlier
occurrence, which is what an induction head copies (Olsson et al. 2022). With ``distinct=True``
(default) the letters of ``r`` are all different, so that earlier occurrence is unique and the
task can be solved exactly.
"""

from __future__ import annotations

import torch

from glassformer.errors import ConfigError
from glassformer.train.tasks.base import LETTERS, Task, check_choice, check_int, randint
from glassformer.train.tokenizers import CharTokenizer


class Induction(Task):
    name = "induction"
    description = "a random sequence then its repeat, loss on the repeat: dhacgfbe|d -> hacgfbe"
    archs = ("decoder",)
    sep = ""  # no separator: the repeat follows the sequence directly

    def __init__(self, length: int = 8, vocab_size: int = 16, distinct: bool = True, seed: int = 0):
        super().__init__(seed)
        self.length = check_int(self.name, "length", length, 2)
        self.vocab_size = check_int(self.name, "vocab_size", vocab_size, 2, len(LETTERS))  # letters used
        self.distinct = check_choice(self.name, "distinct", distinct, (False, True))
        if distinct and vocab_size < length:
            raise ConfigError(
                f"task {self.name!r}: distinct=True needs vocab_size >= length, got vocab_size={vocab_size}, length={length}"
            )
        self.problem_len = length + 1  # r and the repeat's first token
        self.answer_len = length - 1  # the rest of the repeat
        self.tokenizer = CharTokenizer(LETTERS[:vocab_size])

    def sample(self, batch_size, generator):
        if self.distinct:
            r = torch.rand(batch_size, self.vocab_size, generator=generator).argsort(1)[:, : self.length]
        else:
            r = randint(self.vocab_size, (batch_size, self.length), generator)  # [batch, length]
        return torch.cat([r, r[:, :1]], dim=1), r[:, 1:].clone()  # [batch, length + 1], [batch, length - 1]


__all__ = ["Induction"]
