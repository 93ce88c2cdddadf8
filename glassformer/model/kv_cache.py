"""The key/value cache that makes sampling cost O(new tokens) instead of re-running the whole prefix.

During generation a layer's keys and values for past positions never change (the mask stops them
from seeing the future), so each layer keeps them and only computes k and v for new tokens.
A cross-attention layer's keys and values come from the fixed encoder output: computed once, kept.
With grouped-query attention the cache holds only the ``n_kv_heads`` key/value heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LayerCache:
    k: torch.Tensor | None = None  # [batch, pos, n_kv_heads, d_head]
    v: torch.Tensor | None = None  # [batch, pos, n_kv_heads, d_head]
    cross_k: torch.Tensor | None = None  # [batch, src_pos, n_kv_heads, d_head]
    cross_v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add this step's keys/values; return all keys/values so far."""
        self.k = k if self.k is None else torch.cat([self.k, k], dim=1)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=1)
        return self.k, self.v


class KVCache:
    """One :class:`LayerCache` per decoder block. ``offset`` = how many positions it already holds."""

    def __init__(self, n_layers: int):
        self.layers = [LayerCache() for _ in range(n_layers)]

    @property
    def offset(self) -> int:
        k = self.layers[0].k
        return 0 if k is None else k.shape[1]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search: follow each surviving beam's history)."""
        for layer in self.layers:
            for name in ("k", "v", "cross_k", "cross_v"):
                t = getattr(layer, name)
                if t is not None:
                    setattr(layer, name, t.index_select(0, index))

    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for layer in self.layers
            for t in (layer.k, layer.v, layer.cross_k, layer.cross_v)
            if t is not None
        )
