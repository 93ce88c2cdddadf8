"""Masked language modelling on a text file (BERT's objective, Devlin et al. 2019, §3.1).

Each window of ``block_size`` tokens from the file is corrupted and the encoder predicts the original
token at the chosen positions only:

    chosen_i ~ Bernoulli(0.15)                              (at least one position per window)
    input_i  = [MASK]           with probability 0.8        } for chosen i
             = a random token   with probability 0.1        }
             = x_i (unchanged)  with probability 0.1        }
    L = -(1 / |chosen|) * sum_{chosen i} log p(x_i | input)

The 10% random and 10% unchanged keep the model from learning that only [MASK] positions matter. The
metrics are the validation loss and ``masked_accuracy``, the fraction of chosen positions whose argmax
is the original token (the baseline to beat is the unigram one: always answering the commonest token).
``glassformer fill RUN --input "to be or [MASK] to be"`` fills the blanks with a trained model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from glassformer.errors import ConfigError
from glassformer.train.batch import Batch
from glassformer.train.data import TextTask
from glassformer.train.tokenizers import MASK


class MaskedTextTask(TextTask):
    """Masked LM on a text file (or a prepared folder) for encoders; the tokenizer gains ``[MASK]``."""

    name = "masked-text"
    description = "masked language modelling on a text file (BERT's 15% with 80/10/10)"
    archs = ("encoder",)
    metric_aliases = {"masked_accuracy": "token_accuracy"}

    def __init__(self, path: str | Path, block_size: int = 128, split: str = "train", tokenizer=None,
                 seed: int = 0, mask_prob: float = 0.15):
        if not 0 < mask_prob < 1:
            raise ConfigError(f"task {self.name!r}: option mask_prob must be in (0, 1), got {mask_prob!r}")
        self.mask_prob = mask_prob
        super().__init__(path, block_size=block_size, split=split, tokenizer=tokenizer, seed=seed)
        self.tokenizer = self.tokenizer.with_specials([MASK])  # ids of the file's tokens are unchanged
        self.mask_id = self.tokenizer.token_to_id(MASK)

    @property
    def options(self) -> dict:
        return {**super().options, "mask_prob": self.mask_prob}

    def n_ctx(self, arch: str = "encoder") -> int:
        self._check_arch(arch)
        return self.block_size

    def with_split(self, split: str) -> "MaskedTextTask":
        return MaskedTextTask(self.path, self.block_size, split, tokenizer=self.tokenizer, seed=self.seed, mask_prob=self.mask_prob)

    def batch(self, batch_size: int, arch: str = "encoder", generator: torch.Generator | None = None) -> Batch:
        """``batch_size`` random windows, corrupted as in the module docstring; loss on the chosen positions."""
        self._check_arch(arch)
        g = self.generator if generator is None else generator
        starts = torch.randint(0, len(self.tokens) - self.block_size + 1, (batch_size,), generator=g)  # [batch]
        targets = self.windows(starts, self.block_size)  # [batch, block_size] the original tokens
        chosen = torch.rand(targets.shape, generator=g) < self.mask_prob  # [batch, block_size]
        forced = torch.randint(0, self.block_size, (batch_size,), generator=g)  # [batch] one position at least
        chosen[torch.arange(batch_size), forced] |= ~chosen.any(-1)
        r = torch.rand(targets.shape, generator=g)  # [batch, block_size] which corruption
        random_ids = torch.randint(0, self.d_vocab, targets.shape, generator=g)  # [batch, block_size]
        inputs = torch.where(chosen & (r < 0.8), self.mask_id, targets)
        inputs = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_ids, inputs)  # the last 10%: unchanged
        return Batch(inputs, targets, chosen)

    def example(self, generator=None, prompt_len=None, answer_len=64):
        raise ConfigError("masked-text has no prompt/continuation examples: use `glassformer fill`")

    def __repr__(self) -> str:
        return f"MaskedTextTask({str(self.path)!r}, block_size={self.block_size}, split={self.split!r}, d_vocab={self.d_vocab})"


def fill(model, tokenizer, text: str, top_k: int = 1) -> tuple[str, list[list[tuple[str, float]]]]:
    """Fill every ``[MASK]`` of ``text`` with the encoder's most likely token: ``(filled text, per blank the
    top_k (token, probability) pairs)``. The model must be an encoder with a vocabulary head."""
    from glassformer.errors import InputError

    if model.config.arch != "encoder" or model.config.n_classes:
        raise InputError("fill needs an encoder trained as a masked language model (arch encoder, no classes)")
    mask_id = tokenizer.token_to_id(MASK) if hasattr(tokenizer, "token_to_id") else None
    if mask_id is None:
        raise InputError(f"the model's tokenizer has no {MASK} token: was it trained with `train --text FILE --arch encoder`?")
    ids = list(tokenizer.encode(text))
    blanks = [i for i, t in enumerate(ids) if t == mask_id]
    if not blanks:
        raise InputError(f"--input has no {MASK} to fill: write the blanks as {MASK}, e.g. 'to be or {MASK} to be'")
    device = next(model.parameters()).device
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([ids], device=device))[0].float(), dim=-1)  # [pos, d_vocab]
    special = set(getattr(tokenizer, "special_ids", {}).values()) | {mask_id}
    probs[:, sorted(i for i in special if i < probs.shape[-1])] = 0.0  # a blank is filled with text, never [MASK]
    filled, choices = list(ids), []
    for i in blanks:
        p, top = probs[i].topk(top_k)
        filled[i] = int(top[0])
        choices.append([(tokenizer.decode([int(t)]), float(q)) for q, t in zip(p, top)])
    return tokenizer.decode(filled), choices


__all__ = ["MaskedTextTask", "fill"]
