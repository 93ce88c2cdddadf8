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

Keys and values live in a preallocated buffer that doubles when full, and each step writes its new
keys into the next free slots: appending one token costs O(1) copies, not the O(seen) of concatenating
the whole cache every step. ``k`` and ``v`` are views of the kept part of the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LayerCache:
    k_buffer: torch.Tensor | None = None  # [batch, capacity, n_kv_heads, d_head]; kept keys in [start, end)
    v_buffer: torch.Tensor | None = None
    start: int = 0
    end: int = 0
    cross_k: torch.Tensor | None = None  # [batch, src_pos, n_kv_heads, d_head]
    cross_v: torch.Tensor | None = None
    S: torch.Tensor | None = None  # linear attention: [batch, n_kv_heads, d_head, d_head]
    u: torch.Tensor | None = None  # linear attention: [batch, n_kv_heads, d_head]
    seen: int = 0  # how many positions this layer has processed

    @property
    def k(self) -> torch.Tensor | None:
        """Keys of positions seen - kept .. seen - 1: [batch, kept, n_kv_heads, d_head] (a view)."""
        return None if self.k_buffer is None else self.k_buffer[:, self.start : self.end]

    @property
    def v(self) -> torch.Tensor | None:
        return None if self.v_buffer is None else self.v_buffer[:, self.start : self.end]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Add this step's keys/values; return all kept keys/values and the position of the first one."""
        n, start, end = k.shape[1], self.start, self.end
        if self.k_buffer is None or end + n > self.k_buffer.shape[1]:
            self._make_room(n, k)
            start, end = self.start, self.end
        self.k_buffer[:, end : end + n] = k
        self.v_buffer[:, end : end + n] = v
        self.end, self.seen = end + n, self.seen + n
        return self.k_buffer[:, start : end + n], self.v_buffer[:, start : end + n], self.seen - (end + n - start)

    def _make_room(self, n: int, like: torch.Tensor) -> None:
        """Make n free slots after ``end`` (there are fewer): slide the kept keys to the front if that frees enough, else
        double the buffer (both amortised O(1) per appended position)."""
        capacity = 0 if self.k_buffer is None else self.k_buffer.shape[1]
        kept = self.end - self.start
        if kept + n > capacity // 2 or self.k_buffer is None:
            capacity = max(2 * capacity, kept + n)
        batch, _, heads, d_head = like.shape
        new_k, new_v = (like.new_empty(batch, capacity, heads, d_head) for _ in range(2))
        if kept:
            new_k[:, :kept], new_v[:, :kept] = self.k, self.v
        self.k_buffer, self.v_buffer, self.start, self.end = new_k, new_v, 0, kept

    def keep_last(self, n: int) -> None:
        """Forget all but the last ``n`` keys/values (sliding-window attention never looks further back)."""
        self.start = max(self.start, self.end - n)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search)."""
        for name in ("k_buffer", "v_buffer", "cross_k", "cross_v", "S", "u"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.index_select(0, index))

    def tensors(self) -> list[torch.Tensor]:
        """What the cache holds: the kept keys and values (not the buffer's free slots), cross keys, sums."""
        held = [self.k, self.v, self.cross_k, self.cross_v, self.S, self.u]
        return [t for t in held if t is not None]


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
            layer.reorder(index)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.layers for t in layer.tensors())
