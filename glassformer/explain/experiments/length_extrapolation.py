"""Which positional scheme extrapolates to sequences longer than those seen in training?

Character-level language models on Shakespeare, identical except for the positional scheme, are trained
on windows of ``train_len`` characters and then scored at every position of windows four times longer.
The loss at position p is the model's cross-entropy predicting character p + 1 from the p + 1 before it;
with more context it should fall, or at least stay flat. Beyond ``train_len`` each scheme meets something
it never saw:

* learned:    W_pos rows past train_len were never trained (still their random initialisation);
* sinusoidal: angles p * omega_k it never saw;
* RoPE:       query-key rotations by distances it never saw;
* ALiBi:      only a penalty -m_h |i - j| that keeps growing the same way: nothing new;
* none:       nothing positional at all (a causal decoder still infers some order from the mask).

(Press et al. 2022, "Train Short, Test Long", is the large-scale version of this experiment.)
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

from glassformer.errors import InputError
from glassformer.explain.experiments import ExperimentResult
from glassformer.explain.experiments._common import figure, one_thread, save, smooth, train
from glassformer.model import ModelConfig, Transformer

NAME = "length-extrapolation"
DESCRIPTION = "Which positional scheme extrapolates to longer sequences: learned, sinusoidal, RoPE, ALiBi (and none)?"
DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "shakespeare" / "tiny.txt"


def per_position_loss(model: Transformer, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy at each position of ``tokens`` [batch, length]: [length - 1]."""
    with torch.no_grad():
        logits = model(tokens[:, :-1])  # [batch, length - 1, vocab]
        loss = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")  # [batch, length - 1]
    return loss.mean(0)


def train_and_score(args: tuple) -> list[float]:
    """Train one scheme on ``train_len`` windows; its per-position loss on the long ``windows``."""
    from glassformer.train.data import TextTask

    scheme, path, train_len, test_len, steps, batch_size, seed, windows = args
    with one_thread():
        task = TextTask(path, block_size=train_len, seed=seed)
        torch.manual_seed(seed)
        model = Transformer(ModelConfig(d_model=64, n_layers=2, n_heads=4, d_vocab=task.d_vocab, n_ctx=test_len,
                                        positional=scheme))
        train(model, task, steps=steps, lr=3e-3, seed=seed, batch_size=batch_size, eval_batches=1)
        return per_position_loss(model.eval(), windows).tolist()


def run(out: Path, *, quick: bool = False, seed: int = 0, data: str | Path | None = None) -> ExperimentResult:
    from glassformer.train.data import TextTask

    path = Path(data) if data is not None else DATA
    if not path.is_file():
        raise InputError(f"the Shakespeare text is not at {path.resolve()} (shared/data/shakespeare/tiny.txt beside the repo)")
    train_len, test_len = 32, 128
    steps, batch_size = (150, 16) if quick else (500, 32)
    schemes = ["learned", "rope", "alibi"] if quick else ["learned", "sinusoidal", "rope", "alibi", "none"]
    task = TextTask(path, block_size=train_len, seed=seed)  # builds the token cache once, before any worker starts
    val = TextTask(path, block_size=test_len, split="val", tokenizer=task.tokenizer, seed=seed)
    windows = val.batch(128 if quick else 512, generator=torch.Generator().manual_seed(seed)).inputs  # [batch, test_len]
    jobs = [(scheme, path, train_len, test_len, steps, batch_size, seed, windows) for scheme in schemes]
    if quick:
        losses = [train_and_score(job) for job in jobs]
    else:  # one process per core
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            losses = list(pool.map(train_and_score, jobs))
    curves = {scheme: torch.tensor(loss) for scheme, loss in zip(schemes, losses)}

    inside = {s: float(c[train_len // 2 : train_len].mean()) for s, c in curves.items()}  # trained lengths, with context
    beyond = {s: float(c[2 * train_len :].mean()) for s, c in curves.items()}  # 2x to 4x the training length
    fig, (ax,) = figure(1, width=7.0, height=3.8)
    for scheme, c in curves.items():
        ax.plot(range(1, len(c) + 1), smooth(c.tolist(), 6), label=f"{scheme}: {inside[scheme]:.2f} → {beyond[scheme]:.2f}", lw=1.3)
    ax.axvline(train_len, color="grey", ls=":", lw=1)
    ax.text(train_len + 1, ax.get_ylim()[1] * 0.98, "training length", va="top", fontsize=8, color="grey")
    ax.set_xlabel("position (characters of context)")
    ax.set_ylabel("next-character loss (nats, running mean of 6)")
    ax.set_title(f"Shakespeare, 2 layers, d_model=64, trained on {train_len}-character windows")
    ax.legend(fontsize=8, title="loss inside → beyond 2x", title_fontsize=8)
    figures = [save(fig, out, "length_extrapolation.png")]

    order = sorted(schemes, key=lambda s: beyond[s] - inside[s])
    finding = (
        f"Trained on {train_len}-character windows ({steps} steps), scored up to {test_len}. Mean loss at positions "
        f"{train_len // 2}-{train_len} vs {2 * train_len}-{test_len}: "
        + "; ".join(f"{s} {inside[s]:.2f} → {beyond[s]:.2f} ({beyond[s] - inside[s]:+.2f})" for s in order)
        + f". Best extrapolation: {order[0]}; worst: {order[-1]}."
    )
    metrics = {"loss_inside": inside, "loss_beyond": beyond, "train_len": train_len, "test_len": test_len, "steps": steps,
               "per_position": {s: [round(float(v), 4) for v in c] for s, c in curves.items()}}
    return ExperimentResult(finding, metrics, figures)
