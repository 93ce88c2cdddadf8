"""The tasks that read a user's data (rather than generating it), by name, so a checkpoint's task spec
(``{"name": ..., "options": ...}``) rebuilds them: ``text`` (next-token LM), ``masked-text`` (masked LM),
``pairs`` (sequence-to-sequence), ``labels`` (text classification), ``digits`` and ``images`` (vision).
Imported lazily: each lives in its own module (``glassformer/train/tasks/`` and ``data.py``)."""

from __future__ import annotations

import importlib
import inspect

FILE_TASKS = {
    "text": "glassformer.train.data:TextTask",
    "masked-text": "glassformer.train.tasks.masked_lm:MaskedTextTask",
    "pairs": "glassformer.train.tasks.pairs:PairsTask",
    "labels": "glassformer.train.tasks.labels:LabelsTask",
    "digits": "glassformer.train.tasks.images:DigitsTask",
    "images": "glassformer.train.tasks.images:ImageFolderTask",
}


def file_task_class(name: str):
    """The class of the data task called ``name``, or None for any other name."""
    target = FILE_TASKS.get(name)
    if target is None:
        return None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def rebuild(name: str, options: dict, tokenizer=None):
    """``cls(**options)`` with the checkpoint's tokenizer where the task takes one."""
    cls = file_task_class(name)
    takes_tokenizer = "tokenizer" in inspect.signature(cls.__init__).parameters
    return cls(**options, **({"tokenizer": tokenizer} if takes_tokenizer else {}))


__all__ = ["FILE_TASKS", "file_task_class", "rebuild"]
