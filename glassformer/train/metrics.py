"""Loss and accuracy of a model's logits on a :class:`~glassformer.train.batch.Batch`.

Sequence tasks (``batch.loss_mask`` given): ``logits`` is ``[batch, pos, d_vocab]`` and only the
masked (answer) positions count. Classification (``batch.loss_mask is None``): ``logits`` is
``[batch, n_classes]`` and ``batch.targets`` the ``[batch]`` labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glassformer.errors import InputError
from glassformer.train.batch import Batch


def _masked(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and targets that count, flattened: ``[n_targets, d_vocab]`` and ``[n_targets]``."""
    if batch.loss_mask is None:
        if logits.dim() != 2 or logits.shape[0] != batch.targets.shape[0]:
            raise InputError(
                f"classification logits must be [batch, n_classes] = [{batch.targets.shape[0]}, n_classes], "
                f"got {list(logits.shape)}"
            )
        return logits, batch.targets
    if logits.dim() != 3 or logits.shape[:2] != batch.targets.shape:
        raise InputError(
            f"logits must be [batch, pos, d_vocab] with [batch, pos] = {list(batch.targets.shape)}, got {list(logits.shape)}"
        )
    mask = batch.loss_mask.to(device=logits.device, dtype=torch.bool)
    return logits[mask], batch.targets.to(logits.device)[mask]  # [n_targets, d_vocab], [n_targets]


def loss_fn(logits: torch.Tensor, batch: Batch, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the positions that count (or the labels, for classification):

        L = -(1/N) * sum_{(b,t): loss_mask[b,t]} log softmax(logits[b,t])[targets[b,t]]

    computed in float32 even when the logits are bf16. ``reduction="sum"`` drops the 1/N (for
    gradient accumulation: sum over micro-batches, then divide by the whole batch's ``n_targets``).
    """
    if reduction not in ("mean", "sum"):
        raise InputError(f"loss_fn: reduction must be 'mean' or 'sum', got {reduction!r}")
    logits, targets = _masked(logits, batch)
    if targets.numel() == 0:
        raise InputError("loss_fn: the batch's loss_mask selects no positions")
    return F.cross_entropy(logits.float(), targets, reduction=reduction)


@torch.no_grad()
def accuracy_counts(logits: torch.Tensor, batch: Batch) -> tuple[int, int, int, int]:
    """``(correct_tokens, tokens, correct_sequences, sequences)`` by argmax, for exact aggregation
    over many batches or processes. A sequence is correct when every one of its masked positions is;
    sequences with no masked position are not counted."""
    if batch.loss_mask is None:
        _masked(logits, batch)  # shape check
        correct = logits.argmax(-1) == batch.targets.to(logits.device)  # [batch]
        n_right, n = int(correct.sum()), correct.numel()
        return n_right, n, n_right, n
    _masked(logits, batch)  # shape check
    mask = batch.loss_mask.to(device=logits.device, dtype=torch.bool)  # [batch, pos]
    right = (logits.argmax(-1) == batch.targets.to(logits.device)) & mask  # [batch, pos]
    counted = mask.any(-1)  # [batch] sequences with something to predict
    seq_right = (right.sum(-1) == mask.sum(-1)) & counted  # [batch]
    return int(right.sum()), int(mask.sum()), int(seq_right.sum()), int(counted.sum())


def accuracy(logits: torch.Tensor, batch: Batch) -> tuple[float, float]:
    """``(token_accuracy, sequence_accuracy)``: the fraction of masked positions whose argmax is the
    target, and the fraction of sequences with every masked position right. For classification both
    are the fraction of labels predicted. NaN when nothing is counted."""
    right, n, seq_right, n_seq = accuracy_counts(logits, batch)
    return (right / n if n else float("nan")), (seq_right / n_seq if n_seq else float("nan"))


__all__ = ["accuracy", "accuracy_counts", "loss_fn"]
