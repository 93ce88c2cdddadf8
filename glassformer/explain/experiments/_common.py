"""What the explain experiments share: a quiet training run, one-thread CPU, and figures without pyplot.

(The leading underscore keeps this module out of the experiment registry.)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from matplotlib.figure import Figure

from glassformer.model import ModelConfig, Transformer


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run with one intra-op thread: these models are so small that more threads only add overhead, and
    on a shared 2-core machine several threads per process make training many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(model: Transformer, task, *, steps: int, lr: float, seed: int, batch_size: int = 32, warmup_steps: int = 20,
          eval_batches: int = 4, **overrides) -> tuple[dict, list[float]]:
    """Train quietly on CPU with the project's Trainer; return (final evaluation, per-step training losses)."""
    from glassformer.train import TrainConfig, Trainer

    config = TrainConfig(steps=steps, lr=lr, seed=seed, batch_size=batch_size, warmup_steps=warmup_steps, eval_every=0,
                         eval_batches=eval_batches, quiet=True, device="cpu", dtype="float32", **overrides)
    trainer = Trainer(model, task, config)
    summary = trainer.train()
    return summary, trainer.losses


def model_for(task, arch: str = "decoder", seed: int = 0, **sizes) -> Transformer:
    """A model sized for ``task`` (vocabulary, context, classes), initialised from ``seed``."""
    torch.manual_seed(seed)
    config = ModelConfig(arch=arch, d_vocab=task.d_vocab, n_ctx=task.n_ctx(arch),
                         n_classes=task.n_classes if arch == "encoder" else 0, **sizes)
    return Transformer(config)


def figure(n_panels: int, width: float = 4.2, height: float = 3.3) -> tuple[Figure, list]:
    """A row of ``n_panels`` axes (matplotlib's object API: no global state, works headless)."""
    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def save(fig: Figure, out: Path, name: str) -> Path:
    path = Path(out) / name
    fig.savefig(path, dpi=110)
    return path


def smooth(values: list[float], window: int = 10) -> list[float]:
    """Running mean (for loss curves)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def fmt_pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.0f}%"
