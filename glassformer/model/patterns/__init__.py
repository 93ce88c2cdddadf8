"""Attention patterns: which keys each query sees, and how the mixing is computed (``config.attention``).

=========  ===========================================  ==================================  ==============
attention  each query sees                              cost (time and memory)              KV cache holds
=========  ===========================================  ==================================  ==============
full       every (earlier) key: softmax                 O(pos^2); fused kernel              all keys
sliding    the ``window`` nearest keys                  O(pos * window), blockwise          last window - 1
sparse     strided or fixed Sparse Transformer pattern  O(pos * sqrt(pos)), blockwise       all keys
linear     every (earlier) key: elu+1 kernel, no softmax O(pos * d_head^2), prefix sums     S and u only
linformer  linformer_k learned mixes of all positions   O(pos * linformer_k); encoders only  (no cache)
=========  ===========================================  ==================================  ==============

Each is a subclass of :class:`~glassformer.model.attention.Attention` that replaces ``attend``
(q, k, v -> z): projections, QK-norm, RoPE, grouped-query heads, hook names and parameter names are
shared. Cross-attention (encoder-decoder) is always full attention.
"""

from __future__ import annotations

from glassformer.model.attention import Attention
from glassformer.model.config import ModelConfig
from glassformer.model.patterns.linear import LinearAttention
from glassformer.model.patterns.linformer import LinformerAttention
from glassformer.model.patterns.sliding import SlidingWindowAttention
from glassformer.model.patterns.sparse import SparseAttention
from glassformer.model.registry import register

PATTERNS = {
    "full": Attention,
    "sliding": SlidingWindowAttention,
    "sparse": SparseAttention,
    "linear": LinearAttention,
    "linformer": LinformerAttention,
}
register("attention", PATTERNS)


def make_attention(config: ModelConfig, causal: bool) -> Attention:
    """The self-attention module the config asks for."""
    return PATTERNS[config.attention](config, causal)


__all__ = ["PATTERNS", "make_attention"]
