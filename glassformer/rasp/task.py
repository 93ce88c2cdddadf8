"""Train on any RASP program: ``rasp.task(program, vocab, max_len)`` is a generated task whose labels are
the interpreter's outputs, one per position.

    from glassformer import rasp
    from glassformer.train import Trainer, TrainConfig, model_for_task

    task = rasp.task("reverse", vocab="abcd", max_len=6)      # a library name, FILE.py:NAME or a SOp
    model = model_for_task(task, "decoder", d_model=64, n_layers=2, n_heads=4)
    Trainer(model, task, TrainConfig(steps=1500, out_dir="runs/rasp-reverse")).train()

Inputs are ``n`` tokens drawn uniformly from ``vocab`` with ``n`` uniform in ``min_len..max_len``; the
labels are ``evaluate(program, x)``. Every input token and output value is one character of the task's
tokenizer (``^`` starts a sequence, ``>`` separates problem and answer, ``.`` pads; an output value that
is not already a one-character string gets a character of its own, listed in ``task.output_chars``).

Layouts (``P`` = the input, ``A`` = the program's outputs as characters, ``^`` = BOS):

* decoder:  ``^ P > A`` shifted by one, as the other generated tasks: the loss is on the answer targets;
* encoder:  inputs ``^ P`` (padded), targets ``A`` at positions 1..n: every position predicts the
  program's output at that position.

**Don't-care positions** are left out of the loss: where the program's value is ``None`` (RASP's "no
value", e.g. ``shift_by``'s first position), and padding.  An output value never seen while the task
listed its output alphabet (from 4,000 inputs, or all of them when there are fewer) is a don't-care too.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import torch

from glassformer.errors import ConfigError
from glassformer.rasp.errors import RaspError, RaspEvaluationError
from glassformer.rasp.interpreter import evaluate
from glassformer.rasp.language import SOp
from glassformer.train.batch import Batch
from glassformer.train.tasks.base import Task, check_int
from glassformer.train.tokenizers import CharTokenizer

BOS, SEP, PAD = "^", ">", "."
NONE_CHAR = "_"  # the answer character of a don't-care (None) output in the decoder layout
_POOL = "0123456789" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "".join(chr(c) for c in range(0x100, 0x200))
_CENSUS = 4000  # inputs drawn to list the output alphabet when there are more possible inputs


def task(program: SOp | str, vocab: Sequence | str | None = None, max_len: int = 6, *, min_len: int = 1,
         seed: int = 0) -> "RaspTask":
    """The generated task of ``program`` (a SOp, a library name, or ``FILE.py[:NAME]``) over ``vocab``
    (default: the library entry's) for inputs of ``min_len..max_len`` tokens."""
    return RaspTask(program, vocab=vocab, max_len=max_len, min_len=min_len, seed=seed)


class RaspTask(Task):
    """A task whose labels are a RASP program's outputs (see the module docstring)."""

    name = "rasp"
    description = "the outputs of a RASP program, one per position: rasp.task(program, vocab, max_len)"
    archs = ("decoder", "encoder")
    sep = SEP

    def __init__(self, program: SOp | str, vocab: Sequence | str | None = None, max_len: int = 6, min_len: int = 1,
                 seed: int = 0):
        super().__init__(seed)
        self.program, spec, entry = _resolve(program)
        self.program_spec = spec  # how a checkpoint names the program (None: a SOp built in Python)
        if vocab is None:
            if entry is None:
                raise ConfigError(f"rasp.task: give vocab= for program {self.program.name!r} (it is not from the library)")
            vocab = entry.vocab
        self.vocab = list(dict.fromkeys(vocab))
        if not self.vocab:
            raise ConfigError("rasp.task: the vocabulary is empty")
        self.max_len = check_int(self.name, "max_len", max_len, 1, 64)
        self.min_len = check_int(self.name, "min_len", min_len, 1, self.max_len)
        self.problem_len = self.answer_len = self.max_len
        self.input_chars = [_input_char(t) for t in self.vocab]
        self._cache: dict[tuple, list | None] = {}
        self.output_values = self._census()
        self.output_chars = _output_chars(self.output_values, dict(zip(self.input_chars, self.vocab)), {BOS, SEP, PAD, NONE_CHAR})
        chars = [BOS, PAD, *self.input_chars, SEP, NONE_CHAR]
        chars += [c for c in self.output_chars if c not in chars]
        self.tokenizer = CharTokenizer(chars)
        self._out_id = {_key(v): self.tokenizer.stoi[c] for v, c in zip(self.output_values, self.output_chars)}
        self.in_id = {_key(t): self.tokenizer.stoi[c] for t, c in zip(self.vocab, self.input_chars)}

    # -- what the checkpoint keeps ----------------------------------------------------------------
    @property
    def options(self) -> dict:
        return {"program": self.program_spec if self.program_spec is not None else self.program.name,
                "vocab": list(self.vocab), "max_len": self.max_len, "min_len": self.min_len, "seed": self.seed}

    def n_ctx(self, arch: str = "decoder") -> int:
        self.check_arch(arch)
        return 2 * self.max_len + 1 if arch == "decoder" else 1 + self.max_len

    # -- labels -----------------------------------------------------------------------------------
    def outputs(self, xs: Sequence) -> list | None:
        """The program's outputs on ``xs`` (memoised), or None if the interpreter fails on it."""
        key = tuple(_key(x) for x in xs)
        if key not in self._cache:
            try:
                self._cache[key] = list(evaluate(self.program, list(xs)))
            except RaspEvaluationError:
                self._cache[key] = None
        return self._cache[key]

    def _census(self) -> list:
        """Every output value seen on all inputs (or on ``_CENSUS`` random ones), in a stable order."""
        n_inputs = sum(len(self.vocab) ** n for n in range(self.min_len, self.max_len + 1))
        if n_inputs <= _CENSUS:
            inputs = (xs for n in range(self.min_len, self.max_len + 1) for xs in itertools.product(self.vocab, repeat=n))
        else:
            g = torch.Generator().manual_seed(12345)
            inputs = (self._draw(g) for _ in range(_CENSUS))
        seen: dict = {}
        failures = 0
        for xs in inputs:
            out = self.outputs(xs)
            if out is None:
                failures += 1
                continue
            for v in out:
                if v is not None:
                    seen.setdefault(_key(v), v)
        if not seen:
            raise ConfigError(f"rasp.task: program {self.program.name!r} produced no value on any input "
                              f"({failures} inputs failed in the interpreter)")
        return sorted(seen.values(), key=lambda v: (type(v).__name__, repr(v)))

    def _draw(self, g: torch.Generator) -> list:
        n = int(torch.randint(self.min_len, self.max_len + 1, (1,), generator=g))
        idx = torch.randint(0, len(self.vocab), (n,), generator=g).tolist()
        return [self.vocab[i] for i in idx]

    def problems(self, batch_size: int, generator: torch.Generator) -> list[tuple[list, list]]:
        """``batch_size`` (input, outputs) pairs, drawing again where the interpreter fails."""
        pairs, tries = [], 0
        while len(pairs) < batch_size:
            xs = self._draw(generator)
            out = self.outputs(xs)
            tries += 1
            if out is not None:
                pairs.append((xs, out))
            elif tries > 50 * batch_size + 100:
                raise RaspError(f"rasp.task: program {self.program.name!r} fails in the interpreter on almost every input")
        return pairs

    # -- batches ----------------------------------------------------------------------------------
    def batch(self, batch_size: int, arch: str = "decoder", generator: torch.Generator | None = None) -> Batch:
        self.check_arch(arch)
        check_int(self.name, "batch_size", batch_size, 1)
        g = self.generator if generator is None else generator
        return self.layout_pairs(self.problems(batch_size, g), arch)

    def layout_pairs(self, pairs: list[tuple[list, list]], arch: str) -> Batch:
        """Lay out (input, outputs) pairs for ``arch`` (see the module docstring), padded on the right."""
        width = self.n_ctx(arch)
        B, pad = len(pairs), self.tokenizer.stoi[PAD]
        inputs = torch.full((B, width), pad, dtype=torch.long)  # [batch, pos]
        targets = torch.full((B, width), pad, dtype=torch.long)  # [batch, pos]
        loss_mask = torch.zeros((B, width), dtype=torch.bool)  # [batch, pos]
        attention_mask = torch.zeros((B, width), dtype=torch.long)  # [batch, pos]
        bos, sep, none = (self.tokenizer.stoi[c] for c in (BOS, SEP, NONE_CHAR))
        for b, (xs, out) in enumerate(pairs):
            n = len(xs)
            x_ids = [self.in_id[_key(x)] for x in xs]
            y_ids = [self._out_id.get(_key(v), none) if v is not None else none for v in out]
            care = [v is not None and _key(v) in self._out_id for v in out]
            if arch == "decoder":
                seq = [bos, *x_ids, sep, *y_ids]  # [2n + 2]
                inputs[b, : 2 * n + 1] = torch.tensor(seq[:-1])
                targets[b, : 2 * n + 1] = torch.tensor(seq[1:])
                loss_mask[b, n + 1 : 2 * n + 1] = torch.tensor(care)  # targets n+1.. are the answer
                attention_mask[b, : 2 * n + 1] = 1
            else:
                inputs[b, : n + 1] = torch.tensor([bos, *x_ids])
                targets[b, 1 : n + 1] = torch.tensor(y_ids)
                loss_mask[b, 1 : n + 1] = torch.tensor(care)
                attention_mask[b, : n + 1] = 1
        return Batch(inputs, targets, loss_mask, attention_mask=attention_mask)

    def example(self, generator: torch.Generator | None = None) -> tuple[str, str]:
        """``(prompt, answer)`` as text, e.g. ``("^abcd>", "dcba")`` for reverse."""
        (xs, out), = self.problems(1, self.generator if generator is None else generator)
        answer = "".join(self.output_chars[self.output_values.index(v)] if v is not None else NONE_CHAR for v in out)
        return BOS + "".join(self.input_chars[self.vocab.index(x)] for x in xs) + SEP, answer

    def value_of(self, char: str) -> Any:
        """The output value a character of the answer stands for (None for the don't-care character)."""
        if char in self.output_chars:
            return self.output_values[self.output_chars.index(char)]
        return None

    def __repr__(self) -> str:
        return f"RaspTask(program={self.options['program']!r}, vocab={self.vocab!r}, max_len={self.max_len})"


def _resolve(program) -> tuple[SOp, str | None, Any]:
    if isinstance(program, SOp):
        return program, None, None
    if isinstance(program, str):
        from glassformer.rasp.cli import load_program

        sop, entry = load_program(program)
        return sop, program, entry
    raise ConfigError(f"rasp.task: program must be a SOp, a library name or FILE.py[:NAME], got {type(program).__name__}")


def _key(v: Any):
    """Values as dict keys: 1, 1.0 and True stay distinct; floats are rounded against summation noise."""
    if isinstance(v, float):
        return (float, round(v, 9))
    return (type(v), v)


def _input_char(token: Any) -> str:
    if isinstance(token, str) and len(token) == 1:
        if token in (BOS, SEP, PAD, NONE_CHAR):
            raise ConfigError(f"rasp.task: the token {token!r} is reserved (^ starts, > separates, . pads, _ is no value)")
        return token
    if isinstance(token, int) and not isinstance(token, bool) and 0 <= token <= 9:
        return str(token)
    raise ConfigError(f"rasp.task: every token must be one character or an int 0..9, got {token!r}")


def _output_chars(values: list, inputs: dict[str, Any], reserved: set[str]) -> list[str]:
    """One character per output value: the input token's character for a value that is also a token, the
    value itself when it is a free one-character string, a digit for a free small int, else the next free
    character of a fixed pool."""
    chars: list[str] = []
    used = set(inputs) | reserved
    pending = []
    for v in values:
        own = v if isinstance(v, str) and len(v) == 1 else (str(v) if isinstance(v, int) and not isinstance(v, bool)
                                                             and 0 <= v <= 9 else None)
        shared = own in inputs and _key(inputs[own]) == _key(v)
        if own is not None and (shared or own not in used):
            chars.append(own)
            used.add(own)
        else:
            chars.append("")
            pending.append(len(chars) - 1)
    pool = (c for c in _POOL if c not in used)
    for i in pending:
        try:
            chars[i] = next(pool)
        except StopIteration:
            raise ConfigError(f"rasp.task: the program has more than {len(_POOL)} output values") from None
    return chars
