"""Text classification from a labelled file, for the encoder (BERT's sequence classification).

Each record is (text, label) (TSV ``text<TAB>label``, CSV, or JSONL, :mod:`records`). The encoder reads
``[CLS] x_1 .. x_n`` (right-padded with ``[PAD]``, masked) and classifies from position 0's final
residual stream:

    logits = resid_L[:, 0] W_cls + b_cls          [batch, n_classes]      L = cross-entropy(logits, label)

The classes are the file's distinct labels in sorted order (``task.class_names``). The metric is
``accuracy`` on the held-out split; :func:`confusion_matrix` counts (true, predicted) over the whole split
and :func:`plot_confusion` draws it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from glassformer.errors import InputError
from glassformer.train.batch import Batch
from glassformer.train.tasks.records import DEFAULT_MAX_TOKENS, RecordTask, build_tokenizer, encode_field, pad
from glassformer.train.tokenizers import CLS, PAD


class LabelsTask(RecordTask):
    """(text, label) records from a TSV / CSV / JSONL file; ``split`` "train" or "val" (a fixed 10%)."""

    name = "labels"
    kind = "labels"
    description = "text classification from a TSV, CSV or JSONL file of text and label (encoder)"
    archs = ("encoder",)
    cls_token = CLS  # what the classifier reads at position 0
    metric_aliases = {"accuracy": "sequence_accuracy"}

    def _encode(self, tokenizer, records: list[tuple[str, str]], rows: list[int]) -> int:
        self.class_names = sorted({label.strip() for _, label in records})
        if len(self.class_names) < 2:
            raise InputError(f"{self.path}: every record has the label {self.class_names[0]!r}; a classifier needs 2 or more classes")
        self.tokenizer = build_tokenizer(tokenizer, [t for t, _ in records], self.path, [PAD, CLS])
        self.pad_id, self.cls_id = self.tokenizer.token_to_id(PAD), self.tokenizer.token_to_id(CLS)
        self.max_tokens = (self.block_size or DEFAULT_MAX_TOKENS) - 1  # [CLS] takes one position
        texts, self.n_cut = encode_field(self.tokenizer, [t for t, _ in records], self.max_tokens, self.too_long, self.path, "text")
        index = {name: i for i, name in enumerate(self.class_names)}
        self.texts = [[self.cls_id] + texts[i] for i in rows]
        self.labels = torch.tensor([index[records[i][1].strip()] for i in rows])  # [n]
        return self.block_size or 1 + max(len(t) for t in texts)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_chars(self) -> list[str]:  # the name ``glassformer sample`` prints classes by
        return self.class_names

    def rows(self, index: list[int]) -> Batch:
        inputs, mask = pad([self.texts[i] for i in index], self.pad_id)  # [batch, pos] each
        return Batch(inputs, self.labels[index], None, attention_mask=mask)

    def __repr__(self) -> str:
        return f"LabelsTask({str(self.path)!r}, split={self.split!r}, records={len(self)}, classes={self.class_names})"


@torch.no_grad()
def confusion_matrix(model, task, batch_size: int = 256) -> torch.Tensor:
    """``[n_classes, n_classes]`` counts over every example of ``task``: row = true class, column = predicted.
    Works for any classification task with ``rows(index)`` and ``labels``."""
    device = next(model.parameters()).device
    model.eval()
    counts = torch.zeros(task.n_classes, task.n_classes, dtype=torch.long)
    for start in range(0, len(task), batch_size):
        batch = task.rows(list(range(start, min(start + batch_size, len(task))))).to(device)
        predicted = model.classify(batch.inputs, attention_mask=batch.attention_mask).argmax(-1).cpu()  # [batch]
        counts.index_put_((batch.targets.cpu(), predicted), torch.ones_like(predicted), accumulate=True)
    return counts


def plot_confusion(counts: torch.Tensor, names: list[str], path: str | Path, title: str = "confusion matrix") -> Path:
    """Draw ``counts`` (rows true, columns predicted) with every cell's count written in, to ``path`` (PNG/SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * n, 1.0 + 0.5 * n))
    ax.imshow(counts.numpy(), cmap="Blues")
    ax.set_xticks(range(n), names, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = int(counts.max()) if counts.numel() else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", color="white" if counts[i, j] > top / 2 else "black", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["LabelsTask", "confusion_matrix", "plot_confusion"]
