"""Classification tasks: dyck (are the brackets balanced), contains-ab, majority.

Each works as a decoder task (``"(()())?1"``: problem, ``?``, the answer's one token) and with the
encoder (inputs ``"^(()())"``, target the label; ``n_classes > 0``). The yes/no tasks draw each
label with probability 1/2, and their negatives are near misses, so accuracy means something:
a model that only counts brackets, or only looks for ``a``, stays well below 100%.
"""

from __future__ import annotations

import torch

from glassformer.errors import ConfigError
from glassformer.train.tasks.base import CLS, LETTERS, ClassificationTask, check_int, randint, rejection_sample
from glassformer.train.tokenizers import CharTokenizer

BRACKETS = "()[]{}"  # token 2k opens bracket type k, token 2k + 1 closes it


def matching_opener(is_open: torch.Tensor) -> torch.Tensor:
    """For each closing bracket j, the position of the opening bracket it closes: the last opener
    i < j whose depth after it is one more than the depth after j. -1 where there is none (and at
    openers). ``is_open`` is ``[batch, length]`` bool; returns ``[batch, length]`` long."""
    depth = torch.where(is_open, 1, -1).cumsum(1)  # [batch, length] nesting depth after each token
    pos = torch.arange(is_open.shape[1])  # [length]
    candidate = (  # [batch, j, i]: i could be the opener that closer j closes
        is_open[:, None, :] & (depth[:, None, :] == depth[:, :, None] + 1) & (pos[None, None, :] < pos[None, :, None])
    )
    partner = (candidate * (pos + 1)).amax(-1) - 1  # [batch, length] the last such i, or -1
    return torch.where(is_open, -1, partner)


def is_balanced(ids: torch.Tensor) -> torch.Tensor:
    """``[batch, length]`` bracket ids -> ``[batch]`` bool: every prefix has at least as many openers
    as closers, the counts are equal, and each closer has the type of the opener it closes."""
    is_open = ids % 2 == 0  # [batch, length]
    depth = torch.where(is_open, 1, -1).cumsum(1)  # [batch, length]
    structure_ok = (depth >= 0).all(1) & (depth[:, -1] == 0)  # [batch]
    rows = structure_ok.nonzero().flatten()  # only these need their types checked
    if int(ids.max()) < 2 or len(rows) == 0:  # one bracket type: the structure is all there is
        return structure_ok
    partner = matching_opener(is_open[rows])  # [rows, length]
    kind = ids[rows] // 2  # [rows, length] bracket type
    types_ok = is_open[rows] | (kind.gather(1, partner.clamp(min=0)) == kind)  # [rows, length]
    balanced = structure_ok.clone()
    balanced[rows] = types_ok.all(1)
    return balanced


class Dyck(ClassificationTask):
    """Is the bracket sequence balanced? ``n_types`` bracket kinds from ``()``, ``[]``, ``{}``.

    Positives are uniform over balanced sequences of ``length`` (see :meth:`_positives`). Negatives, in equal shares: a
    uniformly random unbalanced string; a shuffle with equal numbers of openers and closers in a wrong
    order (so counting is not enough); and, with ``n_types > 1``, a balanced sequence with one
    closer's type changed.
    """

    name = "dyck"
    description = "are the brackets balanced (1) or not (0): (()())?1"
    class_chars = "01"
    n_classes = 2

    def __init__(self, length: int = 12, n_types: int = 1, seed: int = 0):
        super().__init__(seed)
        self.length = check_int(self.name, "length", length, 2)
        if length % 2:
            raise ConfigError(f"task {self.name!r}: option length must be even (balanced needs pairs), got {length}")
        self.n_types = check_int(self.name, "n_types", n_types, 1, len(BRACKETS) // 2)
        self.problem_len = length
        self.tokenizer = CharTokenizer(BRACKETS[: 2 * n_types] + self.class_chars + self.sep + CLS)

    def _shuffled_structure(self, n: int, generator, extra_closer: bool = False) -> torch.Tensor:
        """``[n, length]`` bool: equal numbers of openers (True) and closers in random order (one more
        closer, ``[n, length + 1]``, with ``extra_closer``)."""
        size = self.length + extra_closer
        ranks = torch.rand(n, size, generator=generator).argsort(1)  # [n, size] a random permutation
        return ranks < self.length // 2

    def _with_types(self, is_open: torch.Tensor, generator, match: bool) -> torch.Tensor:
        """Bracket ids for a structure: random opener types; closers take their opener's type when
        ``match`` (and the structure is balanced), else random types."""
        if self.n_types == 1:
            return (~is_open).long()
        kind = randint(self.n_types, is_open.shape, generator)  # [n, length]
        if match:
            partner = matching_opener(is_open)  # [n, length]
            kind = torch.where(partner >= 0, kind.gather(1, partner.clamp(min=0)), kind)
        return 2 * kind + (~is_open).long()

    def _positives(self, n, generator):
        """Uniform balanced sequences by the cycle lemma: of the ``length + 1`` rotations of a random
        arrangement of ``length/2`` openers and ``length/2 + 1`` closers, exactly one keeps every
        prefix's depth >= 0 until its last closer -- the one starting just after the first position
        where the depth reaches its minimum. Dropping that last closer leaves a balanced sequence,
        and each balanced sequence arises from equally many arrangements."""
        is_open = self._shuffled_structure(n, generator, extra_closer=True)  # [n, length + 1]
        depth = torch.where(is_open, 1, -1).cumsum(1)  # [n, length + 1]
        start = depth.argmin(1) + 1  # [n] first minimum (argmin returns the first)
        idx = (start[:, None] + torch.arange(self.length + 1)) % (self.length + 1)  # [n, length + 1]
        structure = is_open.gather(1, idx)[:, :-1]  # [n, length] balanced
        return self._with_types(structure, generator, match=True)

    def _negatives(self, n, generator):
        def random_strings(m, g):
            ids = randint(2 * self.n_types, (m, self.length), g)
            return ids, ~is_balanced(ids)

        def wrong_order(m, g):
            ids = self._with_types(self._shuffled_structure(m, g), g, match=True)
            return ids, ~is_balanced(ids)

        def wrong_type(m, g):
            ids = self._positives(m, g)  # [m, length] balanced
            closers = ids % 2 == 1
            j = (torch.rand(ids.shape, generator=g) * closers).argmax(1)  # [m] a random closer
            shift = 1 + randint(self.n_types - 1, (m,), g)  # [m] a different type
            new = 2 * ((ids[torch.arange(m), j] // 2 + shift) % self.n_types) + 1
            ids[torch.arange(m), j] = new
            return ids, torch.ones(m, dtype=torch.bool)

        modes = [random_strings, wrong_order] + ([wrong_type] if self.n_types > 1 else [])
        candidates = torch.stack([rejection_sample(n, mode, generator) for mode in modes])  # [modes, n, length]
        which = randint(len(modes), (n,), generator)  # [n]
        return candidates[which, torch.arange(n)]

    def sample(self, batch_size, generator):
        labels = randint(2, (batch_size,), generator)  # [batch] 1 = balanced
        problems = torch.where(labels[:, None] == 1, self._positives(batch_size, generator),
                               self._negatives(batch_size, generator))  # [batch, length]
        return problems, self.labels_to_answers(labels), labels


class ContainsAB(ClassificationTask):
    """Does the sequence contain both ``a`` and ``b``? Letters from the first ``vocab_size`` letters.

    Half the examples are positive (an ``a`` and a ``b`` placed at random distinct positions among
    random letters). Negatives: 40% have ``b`` but no ``a``, 40% ``a`` but no ``b``, 20% neither.
    """

    name = "contains-ab"
    description = "does the sequence contain both a and b (1) or not (0): cabd?1"
    class_chars = "01"
    n_classes = 2

    def __init__(self, length: int = 8, vocab_size: int = 8, seed: int = 0):
        super().__init__(seed)
        self.length = check_int(self.name, "length", length, 2)
        self.vocab_size = check_int(self.name, "vocab_size", vocab_size, 3, len(LETTERS))  # letters used
        self.problem_len = length
        self.tokenizer = CharTokenizer(LETTERS[:vocab_size] + self.class_chars + self.sep + CLS)

    def sample(self, batch_size, generator):
        B, L, a, b = batch_size, self.length, 0, 1  # letters a and b are tokens 0 and 1
        labels = randint(2, (B,), generator)  # [batch] 1 = contains both
        kind = torch.rand(B, generator=generator)  # [batch] which negative: <.4 no a, <.8 no b, else neither
        keep_a = (labels == 1) | (kind >= 0.4) & (kind < 0.8)  # [batch] rows that must contain an a
        keep_b = (labels == 1) | (kind < 0.4)  # [batch] rows that must contain a b
        ids = randint(self.vocab_size, (B, L), generator)  # [batch, length]
        other = 2 + randint(self.vocab_size - 2, (B, L), generator)  # [batch, length] letters c, d, ...
        ids = torch.where((ids == a) & ~keep_a[:, None] | (ids == b) & ~keep_b[:, None], other, ids)
        i = randint(L, (B,), generator)  # [batch] where an a goes
        j = (i + 1 + randint(L - 1, (B,), generator)) % L  # [batch] where a b goes (never i)
        rows = torch.arange(B)
        ids[rows[keep_a], i[keep_a]] = a
        ids[rows[keep_b], j[keep_b]] = b
        return ids, self.labels_to_answers(labels), labels


class Majority(ClassificationTask):
    """Which letter occurs most often? Sequences with a tie for the most frequent are never drawn.
    The label is the letter's index (``a`` = 0), which is also its token id."""

    name = "majority"
    description = "the most frequent letter: abacab?a"

    def __init__(self, length: int = 8, vocab_size: int = 4, seed: int = 0):
        super().__init__(seed)
        self.length = check_int(self.name, "length", length, 1)
        self.vocab_size = check_int(self.name, "vocab_size", vocab_size, 2, len(LETTERS))  # letters used
        self.n_classes = vocab_size
        self.class_chars = LETTERS[:vocab_size]
        self.problem_len = length
        self.tokenizer = CharTokenizer(self.class_chars + self.sep + CLS)

    def sample(self, batch_size, generator):
        def draw(m, g):
            ids = randint(self.vocab_size, (m, self.length), g)  # [m, length]
            counts = torch.nn.functional.one_hot(ids, self.vocab_size).sum(1)  # [m, vocab_size]
            unique_max = (counts == counts.amax(1, keepdim=True)).sum(1) == 1  # [m]
            return ids, unique_max

        problems = rejection_sample(batch_size, draw, generator)  # [batch, length]
        labels = torch.nn.functional.one_hot(problems, self.vocab_size).sum(1).argmax(1)  # [batch]
        return problems, self.labels_to_answers(labels), labels


__all__ = ["BRACKETS", "ContainsAB", "Dyck", "Majority", "is_balanced", "matching_opener"]
