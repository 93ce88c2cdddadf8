"""Adding vs concatenating positional embeddings.

The paper adds: resid_0 = W_E[t] + W_pos[p], both of width d_model. The alternative people propose is
to concatenate, resid_0 = [W_E[t]; W_pos[p]], with d_tok + d_pos = d_model. Concatenation is itself an
addition, of two vectors confined to complementary coordinates:

    [e; p] = [e; 0] + [0; p]

so a concatenating model is an adding model whose W_E is zero in the last d_pos columns and whose W_pos
is zero in the first d_tok. The experiment builds it exactly that way (hooks zero those columns of the
``embed`` and ``pos_embed`` activations, so their gradients are zero too), trains both on the same tasks,
and then asks how much the *adding* model's learned W_pos overlaps the subspace W_E uses: if they end up
in nearly separate subspaces anyway, adding lost nothing by not being told to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from glassformer.explain.experiments import ExperimentResult
from glassformer.explain.experiments._common import figure, model_for, one_thread, save, smooth, train
from glassformer.model import Transformer
from glassformer.train.tasks import get_task

NAME = "add-vs-concat"
DESCRIPTION = "Adding vs concatenating positional embeddings: same accuracy? and do added embeddings stay apart on their own?"


@contextlib.contextmanager
def concatenated(model: Transformer, d_tok: int) -> Iterator[None]:
    """Make ``model`` concatenate: tokens use the first ``d_tok`` coordinates, positions the rest."""
    d = model.config.d_model
    tok_mask = (torch.arange(d) < d_tok).float()  # [d_model]
    with model.hooks({"embed": lambda x, hook: x * tok_mask, "pos_embed": lambda x, hook: x * (1 - tok_mask)}):
        yield


def overlap(model: Transformer, energy: float = 0.9) -> tuple[float, float]:
    """(fraction of W_pos's variance inside the subspace holding ``energy`` of W_E's variance, the same
    fraction for a random subspace of that dimension). Lower than the baseline = kept apart."""
    W_E = model.embed.W_E.detach()
    W_pos = model.pos_embed.W_pos.detach()
    W_E = W_E - W_E.mean(0)
    W_pos = W_pos - W_pos.mean(0)
    _, S, Vh = torch.linalg.svd(W_E, full_matrices=False)
    k = int((S.pow(2).cumsum(0) / S.pow(2).sum() < energy).sum()) + 1  # dimensions holding `energy` of W_E
    inside = (W_pos @ Vh[:k].T).pow(2).sum() / W_pos.pow(2).sum()
    return float(inside), k / W_E.shape[1]


def run(out: Path, *, quick: bool = False, seed: int = 0) -> ExperimentResult:
    steps = 300 if quick else 600
    tasks = ["reverse"] if quick else ["reverse", "sort"]
    d_model = 32
    results, curves, overlaps = {}, {}, {}
    with one_thread():
        for name in tasks:
            task = get_task(name, length=8, vocab_size=8, seed=seed)
            for how in ("add", "concat"):
                model = model_for(task, "decoder", seed=seed, d_model=d_model, n_layers=2, n_heads=4)
                ctx = concatenated(model, d_model // 2) if how == "concat" else contextlib.nullcontext()
                with ctx:
                    summary, losses = train(model, task, steps=steps, lr=3e-3, seed=seed, batch_size=64)
                results[(name, how)], curves[(name, how)] = summary["sequence_accuracy"], losses
                if how == "add":
                    overlaps[name] = overlap(model)

    fig, axes = figure(len(tasks) + 1, width=4.2)
    for ax, name in zip(axes, tasks):
        for how in ("add", "concat"):
            ax.plot(smooth(curves[(name, how)], 20), label=f"{how}: {100 * results[(name, how)]:.0f}% sequences right", lw=1.2)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{name}, d_model={d_model} (concat: 16 + 16)")
        ax.legend(fontsize=8)
    ax = axes[-1]
    ax.bar([f"{n}\nlearned" for n in tasks] + ["random\nsubspace"], [100 * overlaps[n][0] for n in tasks] + [100 * overlaps[tasks[0]][1]],
           color=["#4f8bb8"] * len(tasks) + ["#bbbbbb"])
    ax.set_ylabel("% of W_pos variance in W_E's subspace")
    ax.set_title("adding model: do W_E and W_pos overlap?")
    figures = [save(fig, out, "add_vs_concat.png")]

    parts = [f"{n}: add {100 * results[(n, 'add')]:.0f}%, concat {100 * results[(n, 'concat')]:.0f}% of sequences right" for n in tasks]
    lap = "; ".join(f"{n}: {100 * overlaps[n][0]:.0f}% (a random subspace of the same dimension: {100 * overlaps[n][1]:.0f}%)" for n in tasks)
    same = all(abs(results[(n, "add")] - results[(n, "concat")]) <= 0.05 for n in tasks)
    apart = [n for n in tasks if overlaps[n][0] < overlaps[n][1]]
    finding = (
        f"Concatenation is addition into complementary coordinates, [e; p] = [e; 0] + [0; p], so it can only restrict an "
        f"adding model. Trained {steps} steps at d_model = {d_model} ({'; '.join(parts)}). "
        + ("Both trained equally well: splitting the width bought nothing, and superposing tokens and positions cost "
           "nothing. " if same else "The two differed here. ")
        + f"In the adding model, the share of W_pos's variance that lies in the subspace carrying 90% of W_E's variance is "
        f"{lap}: "
        + (f"the learned embeddings kept more apart than chance on {', '.join(apart)}" if apart else "they did not keep apart")
        + (f" but shared more than chance on {', '.join(n for n in tasks if n not in apart)}" if apart and len(apart) < len(tasks) else "")
        + ". Adding leaves that choice to training; concatenating makes it in advance."
    )
    metrics = {"sequence_accuracy": {f"{n}|{h}": v for (n, h), v in results.items()},
               "wpos_in_we_subspace": {n: {"learned": o[0], "random": o[1]} for n, o in overlaps.items()}, "steps": steps}
    return ExperimentResult(finding, metrics, figures)
