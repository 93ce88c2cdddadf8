"""The key/value cache that makes sampling cost O(new tokens) instead of re-running the whole prefix.

During generation a layer's keys and values for past positions never change (the mask stops them
from seeing the future), so each layer keeps them and only computes k and v for new tokens.
A cross-attention layer's keys and values come from the fixed encoder output: computed once, kept.
With grouped-query attention the cache holds only the ``n_kv_heads`` key/value heads.

What a layer keeps depends on its attention pattern:

* full / sparse:   every past key and value                            [batch, seen, n_kv_heads, d_head]
* sliding window:  only the last ``window - 1`` (all a future query can see), so it stops growing
* linear:          no keys at all, only the running sums S = sum_j phi(k_j) v_j^T and u = sum_j phi(k_j)
                   ([batch, n_kv_heads, d_head, d_head] and [batch, n_kv_heads, d_head]): constant size
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class LayerCache:
    k: torch.Tensor | None = None  # [batch, kept, n_kv_heads, d_head]: keys of positions seen - kept .. seen - 1
    v: torch.Tensor | None = None  # [batch, kept, n_kv_heads, d_head]
    cross_k: torch.Tensor | None = None  # [batch, src_pos, n_kv_heads, d_head]
    cross_v: torch.Tensor | None = None
    S: torch.Tensor | None = None  # linear attention: [batch, n_kv_heads, d_head, d_head]
    u: torch.Tensor | None = None  # linear attention: [batch, n_kv_heads, d_head]
    seen: int = 0  # how many positions this layer has processed

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Add this step's keys/values; return all kept keys/values and the position of the first one."""
        self.k = k if self.k is None else torch.cat([self.k, k], dim=1)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=1)
        self.seen += k.shape[1]
        return self.k, self.v, self.seen - self.k.shape[1]

    def keep_last(self, n: int) -> None:
        """Forget all but the last ``n`` keys/values (sliding-window attention never looks further back)."""
        if self.k is not None and self.k.shape[1] > n:
            self.k, self.v = self.k[:, self.k.shape[1] - n :], self.v[:, self.v.shape[1] - n :]

    def tensors(self) -> list[torch.Tensor]:
        return [t for f in fields(self) if isinstance(t := getattr(self, f.name), torch.Tensor)]


class KVCache:
    """One :class:`LayerCache` per decoder block. ``offset`` = how many positions it already holds."""

    def __init__(self, n_layers: int):
        self.layers = [LayerCache() for _ in range(n_layers)]

    @property
    def offset(self) -> int:
        return self.layers[0].seen

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search: follow each surviving beam's history)."""
        for layer in self.layers:
            for f in fields(layer):
                t = getattr(layer, f.name)
                if isinstance(t, torch.Tensor):
                    setattr(layer, f.name, t.index_select(0, index))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.layers for t in layer.tensors())
