"""Small models the lens experiments (and their tests) train in seconds with the project's Trainer.

:class:`RepeatedSegments` is the induction-head task of Olsson et al. (2022) made position-proof: each
row is a run of segments ``r r`` -- a random sequence of distinct tokens, then the same again -- with
every segment's length drawn at random. The second copy of each ``r`` can only be predicted by
finding the earlier copy (an induction circuit); since the offset changes from segment to segment,
a head that simply attends a fixed distance back cannot do it.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from glassformer.errors import ConfigError
from glassformer.model import ModelConfig, Transformer
from glassformer.train.batch import Batch
from glassformer.train.tasks.arithmetic import MOD_ALPHABET
from glassformer.train.tokenizers import CharTokenizer


class RepeatedSegments:
    """Language modelling on rows of repeated random segments (every position counts).

    ``n_ctx`` tokens per row (inputs and targets are the row shifted by one); segment halves have
    ``min_len .. max_len`` distinct tokens out of ``d_vocab``.
    """

    name = "repeated-segments"
    description = "rows of random segments each followed by its copy: abc abc wxyz wxyz ..."
    archs = ("decoder",)
    n_classes = 0

    def __init__(self, d_vocab: int = 32, n_ctx: int = 32, min_len: int = 3, max_len: int = 10, seed: int = 0):
        if not 2 <= min_len <= max_len <= d_vocab or 2 * max_len > n_ctx + 1:
            raise ConfigError(f"RepeatedSegments needs 2 <= min_len <= max_len <= d_vocab and 2 * max_len <= n_ctx + 1, got "
                              f"min_len={min_len}, max_len={max_len}, d_vocab={d_vocab}, n_ctx={n_ctx}")
        self.d_vocab, self.n_ctx_, self.min_len, self.max_len, self.seed = d_vocab, n_ctx, min_len, max_len, seed
        self.tokenizer = CharTokenizer(MOD_ALPHABET[:d_vocab])  # one printable character per token
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def options(self) -> dict:
        return {"d_vocab": self.d_vocab, "n_ctx": self.n_ctx_, "min_len": self.min_len, "max_len": self.max_len, "seed": self.seed}

    def n_ctx(self, arch: str = "decoder") -> int:
        return self.n_ctx_

    def rows(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """[batch, n_ctx + 1] token ids: segments ``r r`` until the row is full (the last may be cut)."""
        rows = []
        for _ in range(batch_size):
            row: list[int] = []
            while len(row) < self.n_ctx_ + 1:
                n = int(torch.randint(self.min_len, self.max_len + 1, (1,), generator=generator))
                r = torch.randperm(self.d_vocab, generator=generator)[:n].tolist()
                row += r + r
            rows.append(row[: self.n_ctx_ + 1])
        return torch.tensor(rows, dtype=torch.long)

    def batch(self, batch_size: int, arch: str = "decoder", generator: torch.Generator | None = None) -> Batch:
        rows = self.rows(batch_size, self.generator if generator is None else generator)
        inputs, targets = rows[:, :-1], rows[:, 1:]  # [batch, n_ctx]
        return Batch(inputs.contiguous(), targets.contiguous(), torch.ones_like(targets, dtype=torch.bool))


def induction_config(d_vocab: int = 32, n_ctx: int = 32, d_model: int = 64, n_heads: int = 4) -> ModelConfig:
    """The 2-layer attention-only transformer of the induction-head experiments. Rotary positions make the
    previous-token head (which needs "the key one before me") quick to learn: with learned positions the
    same model takes several times more steps to form its induction heads."""
    return ModelConfig(arch="decoder", d_model=d_model, n_layers=2, n_heads=n_heads, d_vocab=d_vocab, n_ctx=n_ctx,
                       attn_only=True, norm="layernorm", positional="rope")


@lru_cache(maxsize=4)
def train_induction_model(steps: int = 1500, seed: int = 0, *, d_model: int = 64, n_heads: int = 4, n_ctx: int = 32,
                          max_len: int = 10, lr: float = 1e-3, batch_size: int = 32) -> tuple[Transformer, list[float]]:
    """Train (once per process per arguments) the 2-layer attention-only model on :class:`RepeatedSegments`
    with the project's Trainer. Returns ``(model in eval mode, per-step training losses)``; the model is
    shared between callers with the same arguments, so treat it as read-only."""
    from glassformer.train.trainer import TrainConfig, Trainer

    torch.manual_seed(seed)
    task = RepeatedSegments(n_ctx=n_ctx, max_len=max_len, seed=seed)
    model = Transformer(induction_config(task.d_vocab, n_ctx, d_model, n_heads))
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(100, steps // 10), weight_decay=0.01,
                         eval_every=0, eval_batches=1, seed=seed, device="cpu", quiet=True)
    trainer = Trainer(model, task, config)
    trainer.train()
    return model.eval(), list(trainer.losses)
