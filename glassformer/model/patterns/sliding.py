"""Sliding-window (local) attention: each query sees only the ``window`` nearest keys.

    causal (decoder):  i attends j  iff  0 <= i - j < w          (itself and the w - 1 keys before it)
    bidirectional:     i attends j  iff  |i - j| < w

(Local attention of the Image Transformer, Parmar et al. 2018; Longformer's sliding window, Beltagy
et al. 2020; Mistral.) Stacking L layers lets information travel L (w - 1) positions.

Cost: computed blockwise, never as a [pos, pos] matrix. Queries are cut into blocks of B = w
positions; block b's allowed keys all lie in the key blocks b - 1, b (and b + 1 when bidirectional),
so each block scores B x 2B (or 3B) pairs: time and memory O(pos * w) instead of O(pos^2).
A decoder's KV cache keeps only the last w - 1 keys and values: it stops growing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from glassformer.model.config import ModelConfig
from glassformer.model.kv_cache import LayerCache
from glassformer.model.patterns.masked import PatternAttention, key_validity
from glassformer.model.patterns.softmax_parts import Partial, partial_softmax


def band_partial(attn: PatternAttention, q, k, v, positions, key_padding, window: int, causal: bool) -> Partial:
    """The softmax share of the keys with 0 <= i - j < window (causal) or |i - j| < window, blockwise.

    q, k, v: [batch, heads, pos, d_head], queries and keys both at ``positions`` (contiguous).
    Returns a Partial with num [batch, heads, pos, d_head], den and max [batch, heads, pos].
    """
    batch, heads, n, d_head = q.shape
    B = window  # block length
    span = 2 if causal else 3  # key blocks a query block needs: previous, own (, next)
    n_blocks = math.ceil(n / B)
    # Key index 0 of the padded keys is position positions[0] - B: one empty block before the first query block.
    padded_len = (n_blocks + span - 1) * B
    pad = (0, 0, B, padded_len - B - n)  # left B, right up to the last block's last key block
    k_blocks = F.pad(k, pad).unfold(2, span * B, B).transpose(-1, -2)  # [batch, heads, n_blocks, span*B, d_head]
    v_blocks = F.pad(v, pad).unfold(2, span * B, B).transpose(-1, -2)
    q_blocks = F.pad(q, (0, 0, 0, n_blocks * B - n)).view(batch, heads, n_blocks, B, d_head)
    valid = key_validity(key_padding, batch, n, q.device)  # [batch, pos]
    k_valid = F.pad(valid, (B, padded_len - B - n), value=False).unfold(1, span * B, B)  # [batch, n_blocks, span*B]

    block_start = positions[0] + B * torch.arange(n_blocks, device=q.device)[:, None]  # [n_blocks, 1]
    q_pos = block_start + torch.arange(B, device=q.device)  # [n_blocks, B]
    k_pos = block_start - B + torch.arange(span * B, device=q.device)  # [n_blocks, span*B]
    offset = q_pos[:, :, None] - k_pos[:, None, :]  # [n_blocks, B, span*B]: i - j
    in_window = (offset >= 0) & (offset < window) if causal else offset.abs() < window
    allowed = in_window & k_valid[:, None, :, None, :]  # [batch, 1, n_blocks, B, span*B]

    part = partial_softmax(
        attn.block_scores(q_blocks, k_blocks, q_pos, k_pos),  # [batch, heads, n_blocks, B, span*B]
        allowed, v_blocks, attn.dropout, attn.training,
    )
    return Partial(
        part.num.reshape(batch, heads, n_blocks * B, d_head)[:, :, :n],  # [batch, heads, pos, d_head]
        part.den.reshape(batch, heads, n_blocks * B)[:, :, :n],
        part.max.reshape(batch, heads, n_blocks * B)[:, :, :n],
    )


class SlidingWindowAttention(PatternAttention):
    """Softmax attention over the ``window`` nearest keys, computed blockwise in O(pos * window)."""

    def __init__(self, config: ModelConfig, causal: bool):
        super().__init__(config, causal)
        self.window = config.window

    def allowed(self, q_positions, k_positions):
        offset = q_positions[..., :, None] - k_positions[..., None, :]  # [..., q_pos, k_pos]: i - j
        return (offset >= 0) & (offset < self.window) if self.causal else offset.abs() < self.window

    def efficient(self, q, k, v, positions, key_padding):
        part = band_partial(self, q, k, v, positions, key_padding, self.window, self.causal)
        return part.num / part.den.clamp(min=1e-30)[..., None]  # [batch, heads, pos, d_head]

    def after_step(self, cache: LayerCache | None) -> None:
        if cache is not None:
            cache.keep_last(self.window - 1)  # no later query can see further back

    name = "sliding window"

    def allowed_tex(self) -> str:
        return rf"0 \le i - j < {self.window}" if self.causal else rf"|i - j| < {self.window}"

    def pattern_text(self) -> str:
        return (f"Softmax over the window = {self.window} nearest keys only ("
                + ("the query and the window - 1 before it" if self.causal else "|i - j| < window") + "); other keys get weight 0.")
