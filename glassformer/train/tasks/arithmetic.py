"""Arithmetic tasks: n-digit addition, and modular addition (the grokking set-up).

Modular addition needs ``p = 113`` distinct number tokens, and every task token must be one
character, so each number ``0 <= n < p`` is written as one character of :data:`MOD_ALPHABET`:

    0..9   -> '0'..'9'
    10..35 -> 'a'..'z'
    36..61 -> 'A'..'Z'
    62..   -> 'À', 'Á', ... (Latin-1 letters U+00C0..U+00FF, skipping '×' and '÷')

so ``number_to_char(100) == 'ç'`` and the prompt for 7 + 100 (mod 113) is ``"7+ç="`` and its answer ``"î"`` (107).
"""

from __future__ import annotations

import torch

from glassformer.errors import ConfigError
from glassformer.train.batch import Batch
from glassformer.train.tasks.base import Task, check_choice, check_int, randint
from glassformer.train.tokenizers import CharTokenizer

DIGITS = "0123456789"
MOD_ALPHABET = (
    DIGITS
    + "abcdefghijklmnopqrstuvwxyz"
    + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    + "".join(chr(c) for c in range(0xC0, 0x100) if chr(c) not in "×÷")
)  # 124 characters: numbers 0..123


def number_to_char(n: int) -> str:
    """The character that stands for the number ``n`` in modular-addition prompts."""
    return MOD_ALPHABET[n]


def char_to_number(ch: str) -> int:
    return MOD_ALPHABET.index(ch)


def digits_of(x: torch.Tensor, n_digits: int) -> torch.Tensor:
    """``[batch]`` non-negative ints -> ``[batch, n_digits]`` decimal digits, most significant first."""
    powers = 10 ** torch.arange(n_digits - 1, -1, -1)  # [n_digits]
    return (x[:, None] // powers) % 10  # [batch, n_digits]


class Addition(Task):
    """``a + b`` for ``n_digits``-digit numbers (zero-padded), answer ``n_digits + 1`` digits:
    ``"042+919=0961"``. ``reverse_answer=True`` writes the answer least significant digit first
    (``"042+919=1690"``), the order in which carries are computed."""

    name = "addition"
    description = "add two n-digit numbers: 042+919=0961"
    sep = "="

    def __init__(self, n_digits: int = 3, reverse_answer: bool = False, seed: int = 0):
        super().__init__(seed)
        self.n_digits = check_int(self.name, "n_digits", n_digits, 1, 18)  # 10**19 overflows int64
        self.reverse_answer = check_choice(self.name, "reverse_answer", reverse_answer, (False, True))
        self.problem_len = 2 * n_digits + 1
        self.answer_len = n_digits + 1
        self.tokenizer = CharTokenizer(DIGITS + "+=")

    def sample(self, batch_size, generator):
        a = randint(10**self.n_digits, (batch_size,), generator)  # [batch]
        b = randint(10**self.n_digits, (batch_size,), generator)  # [batch]
        plus = torch.full((batch_size, 1), self.tokenizer.stoi["+"])
        problems = torch.cat([digits_of(a, self.n_digits), plus, digits_of(b, self.n_digits)], dim=1)
        answers = digits_of(a + b, self.n_digits + 1)  # [batch, n_digits + 1]; digit d is token d
        return problems, (answers.flip(1) if self.reverse_answer else answers)


class ModularAddition(Task):
    """``a + b mod p`` over all ``p^2`` pairs, split once (by ``split_seed``) into a train set of
    ``round(train_fraction * p^2)`` pairs and a test set of the rest -- the grokking set-up (Power et
    al. 2022; Nanda et al. 2023 train on 30% of the pairs with p = 113, full batch).

    Prompt ``"a+b="``, answer ``c`` (one character each, see :data:`MOD_ALPHABET`). ``split`` picks
    which pairs ``batch()`` samples from ("train", "test" (= "val"), or "all");
    :meth:`full_batch` returns the whole split at once, for full-batch training.
    """

    name = "modular-addition"
    description = "a+b mod 113 on a fixed train/test split of all pairs (grokking): 7+ç=î"
    archs = ("decoder",)
    sep = "="

    def __init__(self, p: int = 113, train_fraction: float = 0.3, split: str = "train", split_seed: int = 0,
                 seed: int = 0):
        super().__init__(seed)
        self.p = check_int(self.name, "p", p, 2, len(MOD_ALPHABET))
        if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) or not 0 < train_fraction < 1:
            raise ConfigError(f"task {self.name!r}: option train_fraction must be a number in (0, 1), got {train_fraction!r}")
        self.train_fraction = float(train_fraction)
        self.split = check_choice(self.name, "split", split, ("train", "val", "test", "all"))
        self.split_seed = check_int(self.name, "split_seed", split_seed, 0)
        self.problem_len, self.answer_len = 3, 1
        self.tokenizer = CharTokenizer(MOD_ALPHABET[:p] + "+=")
        self.pairs = self.split_pairs(self.split)  # [n_pairs] pair index a * p + b, ascending

    def split_pairs(self, split: str) -> torch.Tensor:
        """The pair indices ``a * p + b`` of a split, ascending. The split depends only on
        ``(p, train_fraction, split_seed)``, never on ``seed``."""
        order = torch.randperm(self.p**2, generator=torch.Generator().manual_seed(self.split_seed))
        n_train = round(self.train_fraction * self.p**2)
        if not 0 < n_train < self.p**2:
            raise ConfigError(f"task {self.name!r}: train_fraction={self.train_fraction} leaves an empty split")
        chosen = {"train": order[:n_train], "val": order[n_train:], "test": order[n_train:], "all": order}[split]
        return chosen.sort().values

    def __len__(self) -> int:
        return len(self.pairs)

    def with_split(self, split: str) -> "ModularAddition":
        options = {**self.options, "split": split}
        return ModularAddition(**options)

    def from_pairs(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = pairs // self.p, pairs % self.p  # [batch] each; number n is token n
        plus = torch.full_like(a, self.tokenizer.stoi["+"])
        problems = torch.stack([a, plus, b], dim=1)  # [batch, 3]
        return problems, ((a + b) % self.p)[:, None]  # [batch, 1]

    def sample(self, batch_size, generator):
        return self.from_pairs(self.pairs[randint(len(self.pairs), (batch_size,), generator)])

    def full_batch(self, arch: str = "decoder") -> Batch:
        """Every pair of the split, once, in ascending order of ``a * p + b``."""
        self.check_arch(arch)
        return self.layout(*self.from_pairs(self.pairs), arch=arch)


__all__ = ["MOD_ALPHABET", "Addition", "ModularAddition", "char_to_number", "number_to_char"]
