"""A :class:`Batch`: the tensors one training step feeds the model, and where the loss counts.

Three layouts, one dataclass (``B`` = batch size):

=================  ==========================  ==========================  =================  =====================
arch               inputs                      targets                     loss_mask          src
=================  ==========================  ==========================  =================  =====================
decoder            [B, pos] ids                [B, pos] next token ids     [B, pos] bool      None
encoder-decoder    [B, pos] decoder ids        [B, pos] answer ids         [B, pos] bool      [B, src_pos] ids
encoder (classes)  [B, pos] ids (CLS first)    [B] class labels            None               None
=================  ==========================  ==========================  =================  =====================

``attention_mask`` / ``src_attention_mask`` are ``[B, pos]`` with 1 = real token, 0 = padding (the
Hugging Face convention), or None when nothing is padded.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from glassformer.errors import InputError


@dataclass
class Batch:
    inputs: torch.Tensor  # [batch, pos] ids fed to the decoder (or to the encoder for encoder-only)
    targets: torch.Tensor  # [batch, pos] target ids, or [batch] class labels (classification)
    loss_mask: torch.Tensor | None  # [batch, pos] bool: where loss and accuracy count; None for classification
    src: torch.Tensor | None = None  # [batch, src_pos] encoder input (encoder-decoder only)
    attention_mask: torch.Tensor | None = None  # [batch, pos] 1 = real token, 0 = padding
    src_attention_mask: torch.Tensor | None = None  # [batch, src_pos]

    def __post_init__(self):
        if self.inputs.dim() != 2:
            raise InputError(f"Batch.inputs must be [batch, pos], got shape {tuple(self.inputs.shape)}")
        n = self.inputs.shape[0]
        for f in fields(self):
            t = getattr(self, f.name)
            if t is not None and t.shape[0] != n:
                raise InputError(f"Batch.{f.name} has {t.shape[0]} rows but inputs has {n}")
        if self.loss_mask is not None and self.loss_mask.shape != self.targets.shape:
            raise InputError(
                f"Batch.loss_mask shape {tuple(self.loss_mask.shape)} != targets shape {tuple(self.targets.shape)}"
            )

    @property
    def is_classification(self) -> bool:
        """True when targets are one label per sequence (``[batch]``) rather than one id per position."""
        return self.targets.dim() == 1

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[0]

    def __len__(self) -> int:
        return self.batch_size

    @property
    def n_tokens(self) -> int:
        """Real (unpadded) tokens the model reads: decoder/encoder inputs plus the encoder-decoder source.
        This is the number to divide by time for tokens/s."""
        n_in = self.inputs.numel() if self.attention_mask is None else int(self.attention_mask.sum())
        if self.src is None:
            return n_in
        return n_in + (self.src.numel() if self.src_attention_mask is None else int(self.src_attention_mask.sum()))

    @property
    def n_targets(self) -> int:
        """How many predictions the loss averages over: masked positions, or sequences for classification."""
        return self.batch_size if self.loss_mask is None else int(self.loss_mask.sum())

    def to(self, device, non_blocking: bool = False) -> "Batch":
        """The same batch with every tensor on ``device``."""
        moved = {
            f.name: (None if (t := getattr(self, f.name)) is None else t.to(device, non_blocking=non_blocking))
            for f in fields(self)
        }
        return Batch(**moved)

    def pin_memory(self) -> "Batch":
        return Batch(**{f.name: (None if (t := getattr(self, f.name)) is None else t.pin_memory()) for f in fields(self)})

    def __getitem__(self, index) -> "Batch":
        """Rows of the batch: ``batch[2:5]`` or ``batch[tensor_of_indices]``."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return replace(self, **{f.name: (None if (t := getattr(self, f.name)) is None else t[index]) for f in fields(self)})

    def split(self, n: int) -> list["Batch"]:
        """``n`` micro-batches of (nearly) equal size, in order, for gradient accumulation.

        With ``loss_fn(..., reduction="sum")`` divided by the full batch's ``n_targets``, the summed
        gradients of the micro-batches equal the full batch's gradient.
        """
        if not isinstance(n, int) or not 1 <= n <= self.batch_size:
            raise InputError(f"Batch.split: n must be an int in 1..{self.batch_size} (the batch size), got {n!r}")
        bounds = torch.linspace(0, self.batch_size, n + 1).round().long().tolist()
        return [self[bounds[i] : bounds[i + 1]] for i in range(n)]

    def __repr__(self) -> str:
        parts = [
            f"{f.name}={list(t.shape)}:{str(t.dtype).removeprefix('torch.')}"
            for f in fields(self)
            if (t := getattr(self, f.name)) is not None
        ]
        return f"Batch({', '.join(parts)})"


__all__ = ["Batch"]
