"""The :class:`Task` base class: one sampler of (problem, answer) pairs, three batch layouts.

A subclass only says how to draw problems and their answers as token ids (:meth:`Task.sample`);
this class lays them out for each architecture. With ``P`` = problem tokens, ``s`` = the
separator, ``A`` = answer tokens and ``^`` = the classification token:

* decoder:          ``P s A``, shifted by one: inputs ``(P s A)[:-1]``, targets ``(P s A)[1:]``,
  loss on the targets that are answer tokens. E.g. reverse: ``"abcdefgh>hgfedcba"``. (A task
  with ``sep = ""`` has no separator: induction's prompt is the sequence and the repeat's first token.)
* encoder-decoder:  src ``P``; decoder inputs ``s A[:-1]``, targets ``A`` (all positions count).
* encoder:          inputs ``^ P`` (the classifier reads position 0), targets the ``[batch]`` labels.

Every token is one character of ``task.tokenizer`` (a CharTokenizer), so a prompt is plain text.
Tasks are seeded (``seed=``) and endless: each ``batch()`` draws fresh examples from the task's own
``generator`` unless you pass one.
"""

from __future__ import annotations

import inspect

import torch

from glassformer.errors import ConfigError
from glassformer.train.batch import Batch
from glassformer.train.tokenizers import CharTokenizer

LETTERS = "abcdefghijklmnopqrstuvwxyz"
ARCHS = ("decoder", "encoder-decoder", "encoder")
SEQ2SEQ_ARCHS = ("decoder", "encoder-decoder")
CLASSIFICATION_ARCHS = ("decoder", "encoder")
CLS = "^"  # the classification token at position 0 of encoder inputs


def check_int(task: str, name: str, value, low: int, high: int | None = None) -> int:
    """``value`` if it is an int in ``low..high``, else a ConfigError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise ConfigError(f"task {task!r}: option {name} must be an int {allowed}, got {value!r}")
    return value


def check_choice(task: str, name: str, value, allowed: tuple) -> object:
    if value not in allowed:
        raise ConfigError(f"task {task!r}: option {name} must be one of {list(allowed)}, got {value!r}")
    return value


def randint(high: int, size: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Uniform int64 in ``[0, high)`` of shape ``size``."""
    return torch.randint(0, high, size, generator=generator)


def rejection_sample(batch_size: int, draw, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` rows of ``draw(n, generator) -> (rows [n, ...], accepted [n] bool)``, keeping only
    accepted rows, drawing again until there are enough (deterministic for a given generator)."""
    kept, n_kept = [], 0
    while n_kept < batch_size:
        n = max(2 * (batch_size - n_kept), 16)
        rows, ok = draw(n, generator)
        kept.append(rows[ok])
        n_kept += int(ok.sum())
    return torch.cat(kept)[:batch_size]


class Task:
    """A generated algorithmic task: seeded, endless, with its own character vocabulary.

    Subclasses set ``name``, ``description``, ``archs``, ``n_classes``, ``sep``, ``tokenizer``,
    ``problem_len`` and ``answer_len``, and implement :meth:`sample`.
    """

    name: str = ""
    description: str = ""
    archs: tuple[str, ...] = SEQ2SEQ_ARCHS
    n_classes: int = 0  # > 0 for classification tasks (encoder head), else 0
    sep: str = ">"  # the separator between problem and answer (one character, or "" for none)
    format_version: int = 1  # raised when the sequence layout changes: checkpoints of an older layout are refused
    tokenizer: CharTokenizer
    problem_len: int
    answer_len: int

    def __init__(self, seed: int = 0):
        self.seed = check_int(self.name, "seed", seed, 0)
        self.generator = torch.Generator().manual_seed(seed)  # the task's own stream of examples

    # ---- what a subclass provides ------------------------------------------------------------
    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(problems [batch, problem_len], answers [batch, answer_len])`` as token ids; for
        classification tasks also ``labels [batch]`` as a third element."""
        raise NotImplementedError

    # ---- the uniform interface ---------------------------------------------------------------
    @property
    def options(self) -> dict:
        """The constructor options that rebuild this task: ``get_task(task.name, **task.options)``."""
        params = inspect.signature(type(self).__init__).parameters
        return {k: getattr(self, k) for k in params if k != "self"}

    @property
    def d_vocab(self) -> int:
        """The model's vocabulary size: every character of ``tokenizer`` (``ModelConfig.d_vocab``)."""
        return self.tokenizer.vocab_size

    def check_arch(self, arch: str) -> str:
        if arch not in self.archs:
            raise ConfigError(f"task {self.name!r} supports arch in {list(self.archs)}, got {arch!r}")
        return arch

    def n_ctx(self, arch: str = "decoder") -> int:
        """The context length a model needs for this task's batches (max of source and target for
        encoder-decoder)."""
        self.check_arch(arch)
        if arch == "decoder":
            return self.problem_len + len(self.sep) + self.answer_len - 1
        if arch == "encoder-decoder":
            return max(self.problem_len, self.answer_len)
        return 1 + self.problem_len

    def with_split(self, split: str) -> "Task":
        """The task to evaluate on: generated tasks are endless, so held-out data is just fresh
        samples (use another generator); tasks with a finite data set override this."""
        check_choice(self.name, "split", split, ("train", "val", "test"))
        return self

    def batch(self, batch_size: int, arch: str = "decoder", generator: torch.Generator | None = None) -> Batch:
        """``batch_size`` fresh examples laid out for ``arch`` (see the module docstring)."""
        self.check_arch(arch)
        check_int(self.name, "batch_size", batch_size, 1)
        g = self.generator if generator is None else generator
        return self.layout(*self.sample(batch_size, g), arch=arch)

    def layout(self, problems: torch.Tensor, answers: torch.Tensor, labels: torch.Tensor | None = None,
               arch: str = "decoder") -> Batch:
        """Lay out sampled problems and answers as a :class:`Batch` for ``arch``."""
        B = problems.shape[0]
        sep = torch.tensor(self.tokenizer.encode(self.sep), dtype=torch.long).expand(B, -1)  # [batch, 1] (or 0)
        if arch == "decoder":
            seq = torch.cat([problems, sep, answers], dim=1)  # [batch, problem_len + 1 + answer_len]
            inputs, targets = seq[:, :-1], seq[:, 1:]  # [batch, pos]
            loss_mask = torch.zeros_like(targets, dtype=torch.bool)
            loss_mask[:, self.problem_len + sep.shape[1] - 1 :] = True  # targets from here on are answer tokens
            return Batch(inputs.contiguous(), targets.contiguous(), loss_mask)
        if arch == "encoder-decoder":
            inputs = torch.cat([sep, answers[:, :-1]], dim=1)  # [batch, answer_len]: sep starts the decoder
            return Batch(inputs, answers.clone(), torch.ones_like(answers, dtype=torch.bool), src=problems)
        cls = torch.full((B, 1), self.tokenizer.stoi[CLS], dtype=torch.long)  # [batch, 1]
        return Batch(torch.cat([cls, problems], dim=1), labels, None)  # inputs [batch, 1 + problem_len]

    def example(self, generator: torch.Generator | None = None) -> tuple[str, str]:
        """``(prompt, answer)`` as text: the decoder's prompt (problem and separator) and the expected
        answer, e.g. ``("abcdefgh>", "hgfedcba")`` for reverse."""
        problems, answers, *_ = self.sample(1, self.generator if generator is None else generator)
        return self.tokenizer.decode(problems[0]) + self.sep, self.tokenizer.decode(answers[0])

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"


class ClassificationTask(Task):
    """A task whose answer is one class: the decoder answers with that class's token after ``sep``,
    the encoder (``n_classes > 0``) predicts the label from position 0."""

    archs = CLASSIFICATION_ARCHS
    sep = "?"
    answer_len = 1
    class_chars: str  # class_chars[label] is the decoder's answer token for that label

    def labels_to_answers(self, labels: torch.Tensor) -> torch.Tensor:
        """``[batch]`` labels -> ``[batch, 1]`` answer token ids."""
        ids = torch.tensor(self.tokenizer.encode(self.class_chars))  # [n_classes]
        return ids[labels][:, None]


__all__ = ["ARCHS", "CLS", "LETTERS", "ClassificationTask", "Task", "check_choice", "check_int", "rejection_sample"]
