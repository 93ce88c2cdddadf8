"""Induction scores that a fixed-offset head cannot earn.

The induction detector (``detectors.induction_reference``) asks whether a query attends to the token after
an earlier copy of its own token. On one repeated sequence ``x x`` of length ``2n`` that key is always
``n - 1`` positions back, so a head that simply attends ``n - 1`` back scores as an induction head there.
:func:`induction_probe` varies the repeat length ``n`` (and, through a filler in front, the offset where
the repeat starts) from row to row; :func:`induction_scores` scores each length separately and averages:

    score[l, h] = mean_n  mean_{rows with repeat length n}  detector score of head (l, h)

An induction head scores high at every ``n``; a head that looks a fixed distance back scores high at one
``n`` only, about ``1 / len(lengths)`` of the way up (``per_length`` shows it).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.lens.detectors import detect_heads


class InductionScores(NamedTuple):
    scores: torch.Tensor  # [layers, heads]: mean over repeat lengths
    per_length: torch.Tensor  # [n_lengths, layers, heads]
    lengths: tuple[int, ...]


def induction_probe(d_vocab: int, lengths: Sequence[int], rows_per_length: int = 8, *,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``f r r`` of width ``2 * max(lengths)``: ``r`` has ``n`` random tokens (one ``n`` of ``lengths``
    per group of ``rows_per_length`` rows) after ``2 (max - n)`` filler tokens. Tokens within a row are
    distinct when the vocabulary allows it (``d_vocab >= 2 max - min``), so each earlier copy is unique.
    Returns (tokens [rows, width], n [rows])."""
    lengths = tuple(int(n) for n in lengths)
    if not lengths or min(lengths) < 2:
        raise InputError(f"induction_probe needs repeat lengths >= 2, got {lengths}")
    top = max(lengths)
    n = torch.tensor(lengths).repeat_interleave(rows_per_length)  # [rows]
    rows, width = len(n), 2 * top
    if d_vocab >= 2 * top - min(lengths):
        letters = torch.rand(rows, d_vocab, generator=generator).argsort(1)  # [rows, d_vocab] distinct per row
    else:
        letters = torch.randint(0, d_vocab, (rows, width), generator=generator)  # [rows, width]
    pos = torch.arange(width)  # [width]
    in_repeat = pos[None] >= (2 * (top - n) + n)[:, None]  # [rows, width]
    source = torch.where(in_repeat, pos[None] - n[:, None], pos[None].expand(rows, -1))  # [rows, width]
    return letters.gather(1, source), n


def default_lengths(d_vocab: int, n_ctx: int) -> tuple[int, ...]:
    """Repeat lengths that fit the model: up to 8 (or n_ctx / 2), from half of that; at least two lengths."""
    top = max(3, min(8, n_ctx // 2))
    return tuple(range(max(2, top // 2), top + 1))


@torch.no_grad()
def induction_scores(model: nn.Module, lengths: Sequence[int] | None = None, rows_per_length: int = 8,
                     seed: int = 0) -> InductionScores:
    """Each self-attention head's induction score over several repeat lengths and offsets (module docstring)."""
    c = model.config
    if c.arch == "encoder-decoder" or c.input != "tokens":
        raise InputError(f"induction scores read a token sequence through self-attention; not for arch={c.arch!r}, "
                         f"input={c.input!r}")
    lengths = tuple(lengths) if lengths is not None else default_lengths(c.d_vocab, c.n_ctx)
    if 2 * max(lengths) > c.n_ctx:
        raise InputError(f"repeat lengths up to {max(lengths)} need {2 * max(lengths)} positions; n_ctx is {c.n_ctx}")
    tokens, n = induction_probe(c.d_vocab, lengths, rows_per_length, generator=torch.Generator().manual_seed(seed))
    tokens = tokens.to(next(model.parameters()).device)
    per_length = torch.stack([detect_heads(model, tokens[n == k], detectors=("induction",))["induction"].cpu()
                              for k in lengths])  # [n_lengths, layers, heads]
    return InductionScores(per_length.mean(0), per_length, lengths)
