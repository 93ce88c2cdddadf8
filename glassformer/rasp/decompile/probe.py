"""What the decompiler feeds a model and reads back: inputs, the model's own outputs, activations, and
the same run with a component ablated or patched from another input.

A :class:`Probe` wraps one model and how its inputs are laid out:

* a **compiled** model (``rasp.compile``): the program input ``x`` is ``[BOS, x_1..x_n]`` to the model, so
  program position ``i`` is model position ``i + 1`` (``offset = 1``) and BOS is the attention sink;
* a **trained** model on a generated task or ``rasp.task``: the program input is the model's whole input
  sequence, one character per token (``offset = 0``), and only the positions the task scores (its loss
  mask) count.

Components are named ``("head", layer, h)`` and ``("mlp", layer, 0)``; the hooks that ablate or patch
them are ``blocks.{layer}.attn.z`` (head h's slice) and ``blocks.{layer}.mlp_out``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from glassformer.errors import InputError

Component = tuple[str, int, int]  # ("head", layer, h) or ("mlp", layer, 0)


@dataclass
class Example:
    xs: list  # the program's input
    ids: list[int]  # the model's input ids
    scored: list[bool]  # per program position: does the model's output there count


@dataclass
class Probe:
    """A model with its input layout: ``encode``, the ``offset`` of program position 0, and ``decode``
    (logits ``[pos, vocab]`` of the program positions -> output values)."""

    model: Any
    sample_fn: Callable[[int, np.random.Generator], list[Example]]
    decode: Callable[[torch.Tensor], list]
    offset: int
    kind: str  # "compiled" | "task"
    vocab: list = field(default_factory=list)
    description: str = ""

    @property
    def causal(self) -> bool:
        return self.model.config.arch == "decoder"

    @property
    def n_layers(self) -> int:
        return self.model.config.n_layers

    def components(self) -> list[Component]:
        c = self.model.config
        out: list[Component] = []
        for layer in range(c.n_layers):
            out += [("head", layer, h) for h in range(self.model.blocks[layer].attn.n_heads)]  # layers may differ
            if not c.attn_only:
                out.append(("mlp", layer, 0))
        return out

    def sample(self, n: int, seed: int) -> list[Example]:
        return self.sample_fn(n, np.random.default_rng(seed))

    # -- running ----------------------------------------------------------------------------------

    @staticmethod
    def groups(examples: Sequence[Example]) -> list[np.ndarray]:
        """Indices of the examples, grouped by input length (each group runs as one unpadded batch)."""
        by_len: dict[int, list[int]] = {}
        for i, ex in enumerate(examples):
            by_len.setdefault(len(ex.ids), []).append(i)
        return [np.array(v) for _, v in sorted(by_len.items())]

    def _ids(self, examples: Sequence[Example], idx: np.ndarray) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return torch.tensor([examples[i].ids for i in idx], dtype=torch.long, device=device)  # [batch, pos]

    @torch.no_grad()
    def run(self, examples: Sequence[Example], names: Callable[[str], bool] | None = None,
            hooks: Callable[[np.ndarray], dict] | None = None) -> tuple[list[list], dict[int, dict]]:
        """The model's outputs (program positions) on every example, and for each group (by its first
        example index) the cached activations ``names`` selects.  ``hooks(idx)`` gives the hook functions
        to attach while the group of examples ``idx`` runs."""
        self.model.eval()
        outputs: list[list] = [None] * len(examples)  # type: ignore[list-item]
        caches: dict[int, dict] = {}
        for idx in self.groups(examples):
            ids = self._ids(examples, idx)
            with self.model.hooks(hooks(idx) if hooks else {}):
                if names is not None:
                    logits, cache = self.model.run_with_cache(ids, names=names)
                    caches[int(idx[0])] = {k: v.float().cpu() for k, v in cache.items()}
                else:
                    logits = self.model(ids)  # [batch, pos, d_vocab_out]
            logits = logits.float().cpu()
            for row, i in enumerate(idx):
                n = len(examples[i].xs)
                outputs[i] = self.decode(logits[row, self.offset : self.offset + n])
        return outputs, caches

    def outputs(self, examples: Sequence[Example]) -> list[list]:
        return self.run(examples)[0]

    def run_patched(self, examples: Sequence[Example], components: Sequence[Component], src: np.ndarray,
                    caches: dict[int, dict] | None = None) -> list[list]:
        """Outputs with every component in ``components`` given its activation on example ``src[e]`` (at the
        model positions both inputs have) while example ``e`` runs: an interchange intervention.  ``caches``:
        the activations from :meth:`run` if already at hand."""
        names = {hook_name(c) for c in components}
        if caches is None:
            _, caches = self.run(examples, names=lambda n: n in names)
        act: dict[tuple[str, int], torch.Tensor] = {}  # (hook, example) -> [pos, ...]
        for idx in self.groups(examples):
            for name, value in caches[int(idx[0])].items():
                for row, e in enumerate(idx):
                    act[(name, int(e))] = value[row]

        def hooks(idx):
            out = {}
            for name in names:
                heads = [c[2] for c in components if c[0] == "head" and hook_name(c) == name]

                def fn(x, hook, name=name, heads=heads):  # x [batch, pos, heads, d_head] or [batch, pos, d_model]
                    x = x.clone()
                    for row, e in enumerate(idx):
                        other = act[(name, int(src[int(e)]))].to(x.device, x.dtype)
                        m = min(other.shape[0], x.shape[1])
                        if heads:
                            x[row, :m, heads] = other[:m, heads]
                        else:
                            x[row, :m] = other[:m]
                    return x
                out[name] = fn
            return out

        return self.run(examples, hooks=hooks)[0]

    def means(self, examples: Sequence[Example], names: set[str]) -> dict[str, torch.Tensor]:
        """The mean of each hook's activation at every position, over all the examples that reach it
        (inputs of every length, so an activation that only depends on the length is not constant)."""
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        _, caches = self.run(examples, names=lambda n: n in names)
        for idx in self.groups(examples):
            for name, act in caches[int(idx[0])].items():  # [batch, pos, ...]
                total = act.sum(0)
                T = total.shape[0]
                if name not in sums or sums[name].shape[0] < T:
                    grown = torch.zeros((T, *total.shape[1:]))
                    grown_n = torch.zeros(T)
                    if name in sums:
                        grown[: sums[name].shape[0]] = sums[name]
                        grown_n[: counts[name].shape[0]] = counts[name]
                    sums[name], counts[name] = grown, grown_n
                sums[name][:T] += total
                counts[name][:T] += act.shape[0]
        return {k: sums[k] / counts[k].clamp(min=1).view(-1, *([1] * (sums[k].dim() - 1))) for k in sums}

    def ablated(self, examples: Sequence[Example], components: Sequence[Component],
                means: dict[str, torch.Tensor] | None = None) -> list[list]:
        """Outputs with every component in ``components`` mean-ablated: its activation replaced, position by
        position, by its mean over inputs of every length (``means``, from :meth:`means`)."""
        by_name: dict[str, list[Component]] = {}
        for c in components:
            by_name.setdefault(hook_name(c), []).append(c)
        if means is None:
            means = self.means(examples, set(by_name))

        def hooks(idx):
            out = {}
            for name, comps in by_name.items():
                heads = [c[2] for c in comps if c[0] == "head"]

                def fn(x, hook, name=name, heads=heads, is_head=comps[0][0] == "head"):
                    mean = means[name][: x.shape[1]].to(x.device, x.dtype).unsqueeze(0).expand_as(x)
                    if not is_head:
                        return mean
                    x = x.clone()
                    x[:, :, heads] = mean[:, :, heads]
                    return x
                out[name] = fn
            return out

        return self.run(examples, hooks=hooks)[0]


def hook_name(c: Component) -> str:
    """The hook a component's activation passes through."""
    return f"blocks.{c[1]}.attn.z" if c[0] == "head" else f"blocks.{c[1]}.mlp_out"


# -- building probes --------------------------------------------------------------------------------


def compiled_probe(compiled, min_len: int = 1, max_len: int | None = None) -> Probe:
    """A probe of a :class:`~glassformer.rasp.CompiledModel`: random inputs of ``min_len..max_len`` tokens."""
    top = compiled.max_len if max_len is None else max_len
    vocab = list(compiled.vocab)

    def sample(n: int, rng: np.random.Generator) -> list[Example]:
        out = []
        for _ in range(n):
            length = int(rng.integers(min_len, top + 1))
            xs = [vocab[i] for i in rng.integers(0, len(vocab), length)]
            out.append(Example(xs, compiled.encode(xs).tolist(), [True] * length))
        return out

    return Probe(compiled.model, sample, compiled.decode, 1, "compiled", vocab,
                 f"compiled {compiled.program_name or 'program'}")


def examples_of(probe: Probe, inputs: Sequence[Sequence], encode: Callable[[list], list[int]]) -> list[Example]:
    """Examples for given program inputs (every position scored), e.g. every input up to some length."""
    return [Example(list(xs), encode(list(xs)), [True] * len(xs)) for xs in inputs]


def task_probe(model, task) -> Probe:
    """A probe of a model trained on ``task`` (a generated task or ``rasp.task``), decoder or encoder."""
    arch = model.config.arch
    if arch not in ("decoder", "encoder"):
        raise InputError(f"decompile reads decoders and encoders; this model is an {arch}")
    if arch == "encoder" and getattr(task, "n_classes", 0):
        raise InputError("decompile reads per-position outputs; this encoder is a sequence classifier")
    tokenizer = task.tokenizer
    chars = tokenizer.chars
    value_of = getattr(task, "value_of", None)

    def decode(logits: torch.Tensor) -> list:
        ids = logits.argmax(-1).tolist()
        return [value_of(chars[i]) if value_of else chars[i] for i in ids]

    def sample(n: int, rng: np.random.Generator) -> list[Example]:
        g = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        batch = task.batch(n, arch, generator=g)
        out = []
        for b in range(n):
            length = int(batch.attention_mask[b].sum()) if batch.attention_mask is not None else batch.inputs.shape[1]
            ids = batch.inputs[b, :length].tolist()
            scored = batch.loss_mask[b, :length].tolist()
            out.append(Example([chars[i] for i in ids], ids, scored))
        return out

    return Probe(model, sample, decode, 0, "task", list(chars), f"{arch} trained on {task!r}")
