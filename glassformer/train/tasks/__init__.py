"""Generated algorithmic tasks: seeded, endless, each with its own one-character-per-token vocabulary.

    >>> task = get_task("reverse", length=8)
    >>> task.example()                           # ('abcdefgh>', 'hgfedcba') -- plain text
    >>> batch = task.batch(64, arch="decoder")   # Batch(inputs, targets, loss_mask)
    >>> task.n_ctx("decoder"), task.d_vocab      # what a ModelConfig needs

=================  ===================================  ==============================  ===========================
task               decoder example                      archs                           options (defaults)
=================  ===================================  ==============================  ===========================
copy               ``abcdefgh>abcdefgh``                decoder, encoder-decoder        length=8, vocab_size=8
reverse            ``abcdefgh>hgfedcba``                decoder, encoder-decoder        length=8, vocab_size=8
sort               ``dbcahgfe>abcdefgh``                decoder, encoder-decoder        length=8, vocab_size=8
histogram          ``abcabdaa>a4b2c1a4b2d1a4a4``       decoder, encoder-decoder        length=8, vocab_size=6
addition           ``042+919=0961``                     decoder, encoder-decoder        n_digits=3, reverse_answer
dyck               ``(()())()()()?1``                   decoder, encoder (2 classes)    length=12, n_types=1
modular-addition   ``7+ç=î`` (numbers as characters)    decoder                         p=113, train_fraction=0.3,
                                                                                        split, split_seed
contains-ab        ``cabdefgh?1``                       decoder, encoder (2 classes)    length=8, vocab_size=8
induction          ``dhacgfbed`` -> ``hacgfbe``         decoder                         length=8, vocab_size=16
majority           ``abacabdc?a``                       decoder, encoder (vocab_size)   length=8, vocab_size=4
=================  ===================================  ==============================  ===========================

Every task also takes ``seed`` (default 0). ``vocab_size`` is how many letters problems use; the
model's vocabulary size is ``task.d_vocab`` (= ``task.tokenizer.vocab_size``).
"""

from __future__ import annotations

import inspect

from glassformer.errors import ConfigError
from glassformer.train.tasks.arithmetic import MOD_ALPHABET, Addition, ModularAddition, char_to_number, number_to_char
from glassformer.train.tasks.base import ARCHS, ClassificationTask, Task
from glassformer.train.tasks.classification import ContainsAB, Dyck, Majority, is_balanced
from glassformer.train.tasks.induction import Induction
from glassformer.train.tasks.sequence import Copy, Histogram, Reverse, Sort

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (Copy, Reverse, Sort, Histogram, Addition, Dyck, ModularAddition, ContainsAB, Induction, Majority)
}


def get_task(name: str, **options) -> Task:
    """The task called ``name`` built with ``options`` (see the table above). An unknown name or
    option raises ConfigError listing the allowed ones."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; the tasks are: {', '.join(TASKS)}")
    cls = TASKS[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"task {name!r} has no option {unknown[0]!r}; its options are: {', '.join(allowed)}")
    return cls(**options)


def list_tasks() -> list[tuple[str, str]]:
    """``[(name, description), ...]`` of every task, in the table's order."""
    return [(name, cls.description) for name, cls in TASKS.items()]


__all__ = [
    "ARCHS",
    "MOD_ALPHABET",
    "TASKS",
    "Addition",
    "ClassificationTask",
    "ContainsAB",
    "Copy",
    "Dyck",
    "Histogram",
    "Induction",
    "Majority",
    "ModularAddition",
    "Reverse",
    "Sort",
    "Task",
    "char_to_number",
    "get_task",
    "is_balanced",
    "list_tasks",
    "number_to_char",
]
