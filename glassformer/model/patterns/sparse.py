"""Sparse Transformer attention (Child et al. 2019, "Generating Long Sequences with Sparse Transformers").

Each head attends to the union of two factorised patterns (the paper's "merged" heads) with block
length l = ``stride`` (default round(sqrt(n_ctx))), for query i and key j (causal: also j <= i):

    strided:  local     0 <= i - j < l   (bidirectional: |i - j| < l)
              strided   (i - j) mod l = 0                    -- every l-th key before (and after) i
    fixed:    block     floor(j / l) = floor(i / l)          -- i's own block
              summary   j mod l >= l - c                     -- the last c = ``sparse_summary`` keys of
                                                                every block summarise it

Cost, with R = pos / l blocks: the local / block part is computed blockwise (pos x l or 2l pairs);
the strided part reshapes the sequence into an [R, l] grid whose columns hold the positions that are
l apart, and attends within each column (l columns x R x R pairs = pos^2 / l); the summary part
scores every query against the R * c summary keys (pos^2 c / l). With l ~ sqrt(pos), time and memory
are O(pos * sqrt(pos)). The two parts are disjoint and their softmax shares are merged exactly
(``softmax_parts``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from glassformer.model.config import ModelConfig
from glassformer.model.patterns.masked import PatternAttention, key_validity
from glassformer.model.patterns.sliding import band_partial
from glassformer.model.patterns.softmax_parts import Partial, merge, partial_softmax
from glassformer.model.registry import register


class SparseAttention(PatternAttention):
    """Strided or fixed Sparse Transformer attention, O(pos * sqrt(pos)) with l ~ sqrt(pos)."""

    MODES = ("strided", "fixed")  # config.sparse_pattern: the paper's two factorisations

    def __init__(self, config: ModelConfig, causal: bool):
        super().__init__(config, causal)
        self.stride, self.mode, self.summary = config.stride, config.sparse_pattern, config.sparse_summary
        self.name = f"sparse ({self.mode})"

    def allowed(self, q_positions, k_positions):
        i, j, l = q_positions[..., :, None], k_positions[..., None, :], self.stride  # [..., q, 1], [..., 1, k]
        if self.mode == "strided":
            d = i - j
            ok = (d.abs() < l) | (d % l == 0)
        else:
            ok = (i // l == j // l) | (j % l >= l - self.summary)
        return ok & (j <= i) if self.causal else ok

    name = "sparse (strided)"

    def allowed_tex(self) -> str:
        l, c = self.stride, self.summary
        ok = (rf"|i - j| < {l} \;\lor\; (i - j) \bmod {l} = 0" if self.mode == "strided"
              else rf"\lfloor j / {l} \rfloor = \lfloor i / {l} \rfloor \;\lor\; j \bmod {l} \ge {l - c}")
        return rf"({ok}) \;\land\; j \le i" if self.causal else ok

    def pattern_text(self) -> str:
        what = (f"its {self.stride} nearest keys and every {self.stride}-th key (strided)" if self.mode == "strided"
                else f"its own block of {self.stride} and the last {self.summary} key(s) of every block (fixed)")
        return f"Softmax over the Sparse Transformer pattern: each query sees {what}; other keys get weight 0."

    def efficient(self, q, k, v, positions, key_padding):
        """Blocks are absolute (block r holds positions r*l .. r*l + l - 1): this runs when queries and keys
        are the same positions 0 .. pos - 1, i.e. without a cache or memory (``PatternAttention.attend``)."""
        batch, heads, n, d_head = q.shape
        l = self.stride
        R = math.ceil(n / l)  # blocks (rows of the [R, l] grid)
        valid = key_validity(key_padding, batch, n, q.device)  # [batch, pos]
        if self.mode == "strided":
            parts = (band_partial(self, q, k, v, positions, key_padding, l, self.causal), self._columns(q, k, v, valid, R))
        else:
            parts = (self._blocks(q, k, v, valid, R), self._summaries(q, k, v, valid, R))
        return merge(*parts)  # [batch, heads, pos, d_head]

    def _grid(self, t: torch.Tensor, R: int) -> torch.Tensor:
        """[batch, heads, pos, d] -> [batch, heads, R, l, d]: row r, column c = position r * l + c."""
        t = F.pad(t, (0, 0, 0, R * self.stride - t.shape[2]))
        return t.view(*t.shape[:2], R, self.stride, t.shape[-1])

    def _columns(self, q, k, v, valid, R) -> Partial:
        """Strided part: keys l, 2l, ... away, i.e. the other rows of the query's grid column."""
        l, n = self.stride, q.shape[2]
        qc, kc, vc = (self._grid(t, R).transpose(2, 3) for t in (q, k, v))  # [batch, heads, l, R, d_head]
        pos = torch.arange(R * l, device=q.device).view(R, l).T  # [l, R]: position of (column, row)
        rows = torch.arange(R, device=q.device)
        other_row = rows[:, None] > rows[None, :] if self.causal else rows[:, None] != rows[None, :]  # [R, R]
        k_valid = F.pad(valid, (0, R * l - n), value=False).view(-1, R, l).transpose(1, 2)  # [batch, l, R]
        allowed = other_row & k_valid[:, None, :, None, :]  # [batch, 1, l, R, R]
        part = partial_softmax(self.block_scores(qc, kc, pos, pos), allowed, vc, self.dropout, self.training)
        return Partial(  # back from columns to positions
            part.num.transpose(2, 3).reshape(*q.shape[:2], R * l, -1)[:, :, :n],
            part.den.transpose(2, 3).reshape(*q.shape[:2], R * l)[:, :, :n],
            part.max.transpose(2, 3).reshape(*q.shape[:2], R * l)[:, :, :n],
        )

    def _blocks(self, q, k, v, valid, R) -> Partial:
        """Fixed part 1: the query's own block of l positions."""
        l, n = self.stride, q.shape[2]
        qb, kb, vb = (self._grid(t, R) for t in (q, k, v))  # [batch, heads, R, l, d_head]
        pos = torch.arange(R * l, device=q.device).view(R, l)  # [R, l]
        c = torch.arange(l, device=q.device)
        in_block = c[None, :] <= c[:, None] if self.causal else torch.ones(l, l, dtype=torch.bool, device=q.device)
        k_valid = F.pad(valid, (0, R * l - n), value=False).view(-1, R, l)  # [batch, R, l]
        allowed = in_block & k_valid[:, None, :, None, :]  # [batch, 1, R, l, l]
        part = partial_softmax(self.block_scores(qb, kb, pos, pos), allowed, vb, self.dropout, self.training)
        return Partial(
            part.num.reshape(*q.shape[:2], R * l, -1)[:, :, :n],
            part.den.reshape(*q.shape[:2], R * l)[:, :, :n],
            part.max.reshape(*q.shape[:2], R * l)[:, :, :n],
        )

    def _summaries(self, q, k, v, valid, R) -> Partial:
        """Fixed part 2: the summary keys (last c of each block) of the other (causal: earlier) blocks."""
        l, n, c = self.stride, q.shape[2], self.summary
        index = (torch.arange(R, device=q.device)[:, None] * l + torch.arange(l - c, l, device=q.device)).flatten()
        index = index[index < n]  # [n_summary] positions of the summary keys
        positions = torch.arange(n, device=q.device)
        q_block, k_block = positions // l, index // l
        other = k_block[None, :] < q_block[:, None] if self.causal else k_block[None, :] != q_block[:, None]
        allowed = other & valid[:, index][:, None, None, :]  # [batch, 1, pos, n_summary]
        return partial_softmax(
            self.block_scores(q, k[:, :, index], positions, index),  # [batch, heads, pos, n_summary]
            allowed, v[:, :, index], self.dropout, self.training,
        )


register("sparse_pattern", SparseAttention.MODES)
