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

Keys and values live in a preallocated buffer with room to spare, and each step writes its new keys into
the next free slots: appending one token costs O(1) copies, not the O(seen) of concatenating the whole
cache every step. ``k`` and ``v`` are (read-only) views of the kept part of the buffer; ``nbytes`` counts
the kept keys, not the free slots (the buffer is at most twice that). While autograd records, appends
concatenate instead, so gradients can flow through cached decoding. ``clone()`` gives an independent
copy (``copy.copy`` would share the buffer): run a prompt once, continue it several ways.
"""

from __future__ import annotations

from collections.abc import Callable
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
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            return self._append_differentiable(k, v)
        capacity = 0 if self.k_buffer is None else self.k_buffer.shape[1]
        if end + n > capacity or capacity > 4 * (end - start + n):  # full, or mostly forgotten (sliding window)
            self._make_room(n, k)
            start, end = self.start, self.end
        self.k_buffer[:, end : end + n] = k
        self.v_buffer[:, end : end + n] = v
        self.end, self.seen = end + n, self.seen + n
        return self.k_buffer[:, start : end + n], self.v_buffer[:, start : end + n], self.seen - (end + n - start)

    def _make_room(self, n: int, like: torch.Tensor) -> None:
        """A new buffer of twice what it must hold (the kept keys and n more), the kept keys copied to its front:
        amortised O(1) per appended position, and a sliding window's buffer stays about 2 windows long."""
        kept = self.end - self.start
        batch, _, heads, d_head = like.shape
        new_k, new_v = (like.new_empty(batch, 2 * (kept + n), heads, d_head) for _ in range(2))
        if kept:
            new_k[:, :kept], new_v[:, :kept] = self.k, self.v
        self.k_buffer, self.v_buffer, self.start, self.end = new_k, new_v, 0, kept

    def _append_differentiable(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """While autograd records (gradients through cached decoding), earlier keys may be saved for backward,
        so nothing is written in place: the kept keys and the new ones are concatenated into a new tensor."""
        k_all = k if self.k is None else torch.cat([self.k, k], dim=1)  # [batch, kept + n, n_kv_heads, d_head]
        v_all = v if self.v is None else torch.cat([self.v, v], dim=1)
        self.k_buffer, self.v_buffer, self.start, self.end = k_all, v_all, 0, k_all.shape[1]
        self.seen += k.shape[1]
        return k_all, v_all, self.seen - k_all.shape[1]

    def keep_last(self, n: int) -> None:
        """Forget all but the last ``n`` keys/values (sliding-window attention never looks further back)."""
        self.start = max(self.start, self.end - n)

    def held(self) -> dict[str, torch.Tensor | None]:
        """What the cache holds, by field: the kept keys and values (not the buffer's free slots), cross keys, sums."""
        return {"k_buffer": self.k, "v_buffer": self.v, "cross_k": self.cross_k, "cross_v": self.cross_v,
                "S": self.S, "u": self.u}

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> LayerCache:
        """A new cache holding ``fn(t)`` for every held tensor (its buffer is exactly the kept keys)."""
        tensors = {name: None if t is None else fn(t) for name, t in self.held().items()}
        return LayerCache(**tensors, start=0, end=self.end - self.start, seen=self.seen)


class KVCache:
    """One :class:`LayerCache` per decoder block. ``offset`` = how many positions it already holds."""

    def __init__(self, n_layers: int):
        self.layers = [LayerCache() for _ in range(n_layers)]

    @property
    def offset(self) -> int:
        return self.layers[0].seen

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search: follow each surviving beam's history)."""
        self.layers = [layer.map(lambda t: t.index_select(0, index)) for layer in self.layers]

    def clone(self) -> KVCache:
        """An independent copy: run a prompt once, then continue it several ways from the copies."""
        copy = KVCache(0)
        copy.layers = [layer.map(torch.clone) for layer in self.layers]
        return copy

    def nbytes(self) -> int:
        """Bytes of what the cache holds (kept keys and values, cross keys, sums; not free buffer slots)."""
        return sum(t.numel() * t.element_size() for layer in self.layers for t in layer.held().values() if t is not None)
