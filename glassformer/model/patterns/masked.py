"""The common ground of the block-sparse patterns (sliding window, Sparse Transformer).

A pattern is defined by which (query, key) position pairs it allows, :meth:`PatternAttention.allowed`.
Its meaning is softmax attention restricted to those pairs:

    pattern_h[i, j] = exp(s_h[i, j]) / sum_{j' allowed for i} exp(s_h[i, j'])   if (i, j) allowed, else 0

The efficient kernels (in each subclass) compute this without forming the [q_pos, k_pos] matrix. This
module's :meth:`PatternAttention.dense` forms it, on purpose: it runs when a hook watches ``attn.scores``
or ``attn.pattern`` (so the hooks hold the usual [batch, heads, q_pos, k_pos] tensors, zero outside the
pattern; quadratic memory, for inspection) and for incremental decoding with a KV cache (a few queries
against all kept keys: linear per step, like full attention). Tests check that both paths agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glassformer.model.attention import Attention, align_padding
from glassformer.model.kv_cache import LayerCache
from glassformer.model.patterns.softmax_parts import masked_softmax


class PatternAttention(Attention):
    """Softmax attention restricted to the (query, key) pairs that :meth:`allowed` accepts."""

    def allowed(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
        """Bool [..., q_pos, k_pos]: may query position i attend to key position j? (broadcasting positions)"""
        raise NotImplementedError

    def block_scores(self, q, k, q_positions, k_positions) -> torch.Tensor:
        """scale * q k^T + bias(q_positions, k_positions) for stacks of blocks:
        q [batch, heads, ..., Q, d_head], k [batch, heads, ..., K, d_head] -> [batch, heads, ..., Q, K]."""
        scores = self.cap(q @ k.transpose(-1, -2) * self.scale)
        if self.score_bias is not None:
            scores = scores + self.score_bias(q_positions, k_positions)  # [heads, ..., Q, K]
        return scores

    def efficient(self, q, k, v, positions, key_padding) -> torch.Tensor:
        """The sub-quadratic kernel, for q and k at the same positions: [batch, heads, pos, d_head] each."""
        raise NotImplementedError

    def attend(self, q, k, v, *, q_positions, k_positions, key_padding, cache: LayerCache | None) -> torch.Tensor:
        if cache is not None:
            k, v, first = cache.append(k, v)
            k_positions = torch.arange(first, cache.seen, device=q.device)
        key_padding = align_padding(key_padding, k.shape[1])
        k, v = self.expand_kv(k), self.expand_kv(v)  # [batch, k_pos, heads, d_head]
        if self.scores.active or self.pattern.active or q.shape[1] != k.shape[1]:
            z = self.dense(q, k, v, q_positions, k_positions, key_padding)
        else:
            z = self.efficient(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), q_positions, key_padding)
            z = z.transpose(1, 2)  # [batch, q_pos, heads, d_head]
        self.after_step(cache)
        return z

    def after_step(self, cache: LayerCache | None) -> None:
        """What the KV cache may forget once this step is done (nothing, unless a subclass says so)."""

    def dense(self, q, k, v, q_positions, k_positions, key_padding) -> torch.Tensor:
        """The definition, with hooks: [batch, q_pos, heads, d_head] from q, k, v [batch, pos, heads, d_head]."""
        scores = self.cap(torch.einsum("bqhe,bkhe->bhqk", q, k) * self.scale)  # [batch, heads, q_pos, k_pos]
        if self.score_bias is not None:
            scores = scores + self.score_bias(q_positions, k_positions)
        allowed = self.allowed(q_positions, k_positions)[None, None]  # [1, 1, q_pos, k_pos]
        if key_padding is not None:
            allowed = allowed & key_padding.bool()[:, None, None, :]
        scores = self.scores(scores.masked_fill(~allowed, float("-inf")))
        pattern = self.pattern(masked_softmax(scores, allowed))  # [batch, heads, q_pos, k_pos]
        pattern = F.dropout(pattern, self.dropout, self.training)
        return torch.einsum("bhqk,bkhe->bqhe", pattern, v)


def key_validity(key_padding: torch.Tensor | None, batch: int, n: int, device) -> torch.Tensor:
    """[batch, n] bool: True for real keys (all True without padding)."""
    if key_padding is None:
        return torch.ones(batch, n, dtype=torch.bool, device=device)
    return key_padding.bool()
