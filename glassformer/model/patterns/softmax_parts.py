"""Softmax attention over a union of disjoint key sets, one set at a time.

Block-sparse patterns (sliding window, Sparse Transformer) never form the full [q_pos, k_pos] score
matrix: each query's allowed keys are split into a few small, disjoint sets that can be gathered as
dense blocks. The softmax over their union is recovered exactly from one :class:`Partial` per set (the
same bookkeeping FlashAttention uses). For the scores s_j of one set, with m = max_j s_j:

    den = sum_j exp(s_j - m)                          [...]
    num = sum_j exp(s_j - m) v_j                      [..., d_head]

and for sets 1..P, with M = max_p m_p:

    z = sum_p exp(m_p - M) num_p / sum_p exp(m_p - M) den_p       = softmax over the union, times v

A query with no allowed key at all (only possible for a padding position) gets z = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Partial:
    num: torch.Tensor  # [..., q, d_head]  sum_j exp(s_j - max) v_j
    den: torch.Tensor  # [..., q]          sum_j exp(s_j - max)
    max: torch.Tensor  # [..., q]          max_j s_j (-inf when the query has no allowed key here)


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """softmax over the allowed keys (last axis); a row with none allowed is all zeros (not NaN)."""
    pattern = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return pattern.nan_to_num(0.0)


def partial_softmax(
    scores: torch.Tensor,  # [..., q, k]
    allowed: torch.Tensor,  # bool, broadcastable to scores
    v: torch.Tensor,  # [..., k, d_head]
    dropout: float = 0.0,
    training: bool = False,
) -> Partial:
    """One key set's share of the softmax (see the module docstring). Attention dropout drops weights of
    ``num`` only, so that after normalising it is exactly dropout applied to the attention pattern."""
    scores = scores.masked_fill(~allowed, float("-inf"))  # (callers pass fresh scores; this copy replaces them)
    m = scores.amax(dim=-1)  # [..., q]
    e = (scores - _finite(m)[..., None]).exp_()  # [..., q, k]; 0 where not allowed (in place: one block less)
    num = F.dropout(e, dropout, training) @ v  # [..., q, d_head]
    return Partial(num, e.sum(dim=-1), m)


def merge(*parts: Partial) -> torch.Tensor:
    """z = the softmax-weighted sum over the union of the parts' keys: [..., q, d_head]."""
    m = _finite(torch.stack([p.max for p in parts]).amax(dim=0))  # [..., q]
    num = sum(p.num * torch.exp(p.max - m)[..., None] for p in parts)
    den = sum(p.den * torch.exp(p.max - m) for p in parts)  # >= 1 wherever some key is allowed, else 0
    return num / den.clamp(min=1e-30)[..., None]


def _finite(m: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))
