"""Transformer-XL segment-level recurrence (Dai et al. 2019): a decoder reads a long text segment by
segment, and each layer also attends to the states it computed for the previous segment(s).

For layer l, segment tau + 1, with h the layer's attention input (after its norm, in Pre-LN) and
SG = stop-gradient, M = ``memory_len``:

    h~      = [SG(mem_l) ; h]                  [batch, M' + pos, d_model]   M' <= M states of the past
    q       = h W_Q,  k = h~ W_K,  v = h~ W_V   queries only for the new positions; keys also for the memory
    mem_l  <- last M rows of h~, detached       what the next segment will see

so information can flow back up to about M * n_layers positions while every backward pass stays inside
one segment. Positions are relative (the config requires rope, alibi, t5 or none): the memory occupies
positions 0 .. M' - 1 and the segment M' .. M' + pos - 1, and these schemes only see offsets i - j, so
nothing depends on where the window starts. This replaces the paper's own relative encoding (R, u, v)
with RoPE / ALiBi / T5, which keep the same property.

Usage::

    mem = model.new_segment_memory()
    for segment in segments:                      # [batch, pos] each
        logits = model(segment, segment_memory=mem)   # reads, then updates mem

A sequence longer than ``n_ctx`` given in one call (``model(tokens)``, e.g. by the trainer) is split
into segments of ``n_ctx`` positions and run in this way, with a fresh memory unless one is passed; so
training on long sequences trains the recurrence, the gradient stopping at each segment boundary.

With a KV cache as well, the memory is read only on the cache's first call (its keys then live in the
cache) and is still updated on every call.
"""

from __future__ import annotations

import torch

from glassformer.errors import InputError
from glassformer.model.describe import Description


def describe_memory(memory_len: int) -> Description:
    """Transformer-XL's memory as the tools show it (it is state, not a module: the model carries only memory_len)."""
    return Description(
        "Transformer-XL memory",
        (r"\tilde h = [\mathrm{SG}(\mathrm{mem}_l);\ h], \quad q = h W_Q, \quad k = \tilde h W_K, \quad v = \tilde h W_V",
         r"\mathrm{mem}_l \leftarrow \text{last } M \text{ rows of } \tilde h \text{ (stop-gradient)}"),
        f"Each layer's keys and values also read the last M = {memory_len} attention inputs of the previous segment(s), "
        "with the gradient stopped; queries only come from the new positions.",
        f"M={memory_len} cached states per layer, stop-gradient",
    )


class LayerMemory:
    """One layer's memory: its last ``memory_len`` attention inputs, detached.  [batch, <= M, d_model]"""

    def __init__(self, memory_len: int):
        self.memory_len = memory_len
        self.states: torch.Tensor | None = None

    def update(self, h: torch.Tensor) -> None:
        """mem <- last M rows of [mem ; h], with the gradient stopped."""
        h = h.detach()
        joined = h if self.states is None else torch.cat([self.states, h], dim=1)
        self.states = joined[:, -self.memory_len :]


class SegmentMemory:
    """One :class:`LayerMemory` per block. ``length`` = how many past positions it holds now."""

    def __init__(self, n_layers: int, memory_len: int):
        if memory_len < 1:
            raise InputError("a segment memory needs a model with memory_len > 0 (Transformer-XL)")
        self.memory_len = memory_len
        self.layers = [LayerMemory(memory_len) for _ in range(n_layers)]

    @property
    def length(self) -> int:
        states = self.layers[0].states
        return 0 if states is None else states.shape[1]

    def check_batch(self, batch: int) -> None:
        states = self.layers[0].states
        if states is not None and states.shape[0] != batch:
            raise InputError(f"the segment memory holds {states.shape[0]} rows but the input has {batch}")

    def reset(self) -> None:
        """Forget everything (start of a new document)."""
        for layer in self.layers:
            layer.states = None
