"""Multi-head attention, written per head as in the paper (Vaswani et al. 2017, eq. 1 and 2).

For each head h, with x the residual input of the queries and y that of the keys (y = x for
self-attention, y = the encoder output for cross-attention):

    q_h = x W_Q[h] + b_Q[h]                    [pos_q, d_head]
    k_h = y W_K[h] + b_K[h]                    [pos_k, d_head]
    v_h = y W_V[h] + b_V[h]                    [pos_k, d_head]
    scores_h  = scale * q_h k_h^T  (+ bias)    [pos_q, pos_k]   masked entries set to -inf
    pattern_h = softmax(scores_h)  (per row)   [pos_q, pos_k]
    z_h       = pattern_h v_h                  [pos_q, d_head]
    out       = sum_h z_h W_O[h] + b_O         [pos_q, d_model]   (= Concat(z_h) W^O in the paper)

With grouped-query attention several query heads share one key/value head (``n_kv_heads < n_heads``).
When no hook asks for ``scores`` or ``pattern``, the same equations run as one fused kernel
(``F.scaled_dot_product_attention``); a test checks the two paths agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glassformer.model.config import ModelConfig
from glassformer.model.hooks import HookPoint
from glassformer.model.kv_cache import LayerCache
from glassformer.model.positional import ALiBi, Rotary


def attention_mask(
    q_positions: torch.Tensor, k_positions: torch.Tensor, causal: bool, key_padding: torch.Tensor | None
) -> torch.Tensor | None:
    """Which keys each query may attend to: True = attend.  [batch or 1, 1, q_pos, k_pos], or None (all).

    causal:      key position <= query position (a decoder cannot look ahead)
    key_padding: [batch, k_pos], 1 for real tokens, 0 for padding (nobody attends to padding)
    """
    mask = None
    if causal:
        mask = (k_positions[None, :] <= q_positions[:, None])[None, None]  # [1, 1, q_pos, k_pos]
    if key_padding is not None:
        pad = key_padding.bool()[:, None, None, :]  # [batch, 1, 1, k_pos]
        mask = pad if mask is None else mask & pad
        mask = mask | ~mask.any(-1, keepdim=True)  # a row with nothing to attend to (pure padding) attends all
    return mask


class Attention(nn.Module):
    """Multi-head (or grouped-query) attention with per-head weights and a hook on every intermediate."""

    def __init__(self, config: ModelConfig, causal: bool, cross: bool = False):
        super().__init__()
        h, kv, d, e = config.n_heads, config.n_kv_heads, config.d_model, config.d_head
        self.n_heads, self.n_kv_heads, self.d_head = h, kv, e
        self.causal, self.cross, self.scale = causal, cross, config.scale
        self.W_Q = nn.Parameter(torch.empty(h, d, e))
        self.W_K = nn.Parameter(torch.empty(kv, d, e))
        self.W_V = nn.Parameter(torch.empty(kv, d, e))
        self.W_O = nn.Parameter(torch.empty(h, e, d))
        if config.bias:
            self.b_Q = nn.Parameter(torch.zeros(h, e))
            self.b_K = nn.Parameter(torch.zeros(kv, e))
            self.b_V = nn.Parameter(torch.zeros(kv, e))
            self.b_O = nn.Parameter(torch.zeros(d))
        else:
            self.b_Q = self.b_K = self.b_V = self.b_O = None
        self.rotary = Rotary(e, config.rope_fraction, config.rope_base) if config.positional == "rope" and not cross else None
        self.alibi = ALiBi(h) if config.positional == "alibi" and not cross else None
        self.dropout = config.dropout
        self.q, self.k, self.v = HookPoint(), HookPoint(), HookPoint()  # [batch, pos, heads, d_head]
        self.scores, self.pattern = HookPoint(), HookPoint()  # [batch, heads, q_pos, k_pos]
        self.z = HookPoint()  # [batch, q_pos, heads, d_head]

    @staticmethod
    def _project(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """x W[h] + b[h] for every head h: [batch, pos, d_model] -> [batch, pos, heads, d_head]."""
        out = torch.einsum("bpd,hde->bphe", x, W)
        return out + b if b is not None else out

    def forward(
        self,
        x: torch.Tensor,  # [batch, q_pos, d_model]
        memory: torch.Tensor | None = None,  # [batch, k_pos, d_model] (cross-attention: encoder output)
        *,
        positions: torch.Tensor,  # [q_pos] absolute positions of the queries
        key_padding: torch.Tensor | None = None,  # [batch, k_pos] 1 = real
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        q = self.q(self._project(x, self.W_Q, self.b_Q))  # [batch, q_pos, heads, d_head]
        k, v = self._keys_values(x if memory is None else memory, cache)  # [batch, k_pos, kv_heads, d_head]
        k_positions = torch.arange(k.shape[1], device=x.device)
        if self.rotary is not None:
            q = self.rotary(q, positions)  # keys were rotated (by their own positions) in _keys_values
        bias = self.alibi(positions, k_positions) if self.alibi is not None else None  # [heads, q_pos, k_pos]
        mask = attention_mask(positions, k_positions, self.causal and not self.cross, key_padding)
        if self.n_kv_heads != self.n_heads:  # grouped-query: each kv head serves n_heads / n_kv_heads queries
            k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=2)
            v = v.repeat_interleave(self.n_heads // self.n_kv_heads, dim=2)
        if self.scores.active or self.pattern.active:
            z = self._explicit(q, k, v, bias, mask)
        else:
            plain_causal = self.causal and not self.cross and key_padding is None and q.shape[1] == k.shape[1]
            z = self._fused(q, k, v, bias, mask, plain_causal)
        z = self.z(z)  # [batch, q_pos, heads, d_head]
        out = torch.einsum("bqhe,hed->bqd", z, self.W_O)  # [batch, q_pos, d_model]
        return out + self.b_O if self.b_O is not None else out

    def _keys_values(self, y: torch.Tensor, cache: LayerCache | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cross and cache is not None and cache.cross_k is not None:
            return cache.cross_k, cache.cross_v  # the encoder output does not change while decoding
        k = self.k(self._project(y, self.W_K, self.b_K))  # [batch, pos, kv_heads, d_head]
        v = self.v(self._project(y, self.W_V, self.b_V))
        if self.rotary is not None:
            offset = cache.k.shape[1] if cache is not None and cache.k is not None else 0
            k = self.rotary(k, torch.arange(offset, offset + k.shape[1], device=k.device))
        if cache is None:
            return k, v
        if self.cross:
            cache.cross_k, cache.cross_v = k, v
            return k, v
        return cache.append(k, v)

    def _explicit(self, q, k, v, bias, mask) -> torch.Tensor:
        """The equations one by one, with hooks on scores and pattern."""
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * self.scale  # [batch, heads, q_pos, k_pos]
        if bias is not None:
            scores = scores + bias
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        scores = self.scores(scores)
        pattern = self.pattern(torch.softmax(scores, dim=-1))  # [batch, heads, q_pos, k_pos]
        pattern = F.dropout(pattern, self.dropout, self.training)
        return torch.einsum("bhqk,bkhe->bqhe", pattern, v)  # [batch, q_pos, heads, d_head]

    def _fused(self, q, k, v, bias, mask, plain_causal: bool) -> torch.Tensor:
        """The same computation as ``_explicit`` in one kernel (flash / memory-efficient attention).
        A plain causal mask is passed as ``is_causal`` so the kernel never materialises it."""
        if bias is not None:
            attn_mask = (bias if mask is None else bias.masked_fill(~mask, float("-inf"))).to(q.dtype)
        else:
            attn_mask = None if plain_causal else mask
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),  # [batch, heads, pos, d_head]
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=plain_causal and bias is None,
            scale=self.scale,
        )
        return z.transpose(1, 2)  # [batch, q_pos, heads, d_head]
