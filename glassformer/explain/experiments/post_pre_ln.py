"""Post-LN vs Pre-LN: which needs warm-up, and at which learning rates does each train?

The paper put the norm after the residual addition, x -> Norm(x + Sublayer(x)) (Post-LN); GPT-2 and
most later models put it inside the branch, x -> x + Sublayer(Norm(x)) (Pre-LN). Xiong et al. (2020)
argued that Post-LN's gradients at initialisation are uneven across layers, which is why it needs a
learning-rate warm-up, while Pre-LN's are similar in every layer.

The experiment measures both things on 12-layer decoders learning ``reverse``:

1. the gradient norm of each layer's weights at initialisation (one batch, no training);
2. a grid of peak learning rates x {no warm-up, linear warm-up over the first 100 of 300 steps} x
   {Post-LN, Pre-LN} x seeds, each trained for the same number of AdamW steps (beta2 0.98) without
   gradient clipping, scoring held-out token accuracy.

Sized so that it can show the effect (measured, GPT-2 init, lr 1e-2, beta2 0.98, 300 steps, seeds 0-2):
with 6 layers Post-LN trained without warm-up (as it did at lr 5e-3 in earlier runs of this experiment);
with 12 it stayed at chance without warm-up (token accuracy 0.15) and reached 100% with the 100-step
warm-up, while Pre-LN trained either way. Depth is what Xiong et al. say makes Post-LN need warm-up.

The default runs one rate (1e-2) at two seeds, ``--full`` four rates at three seeds, both in two worker
processes (one per core); ``quick`` (the tests) runs one rate and seed in-process, without Pre-LN +
warm-up (3 runs: the comparison the question needs).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from glassformer.explain.experiments import ExperimentResult
from glassformer.explain.experiments._common import figure, model_for, one_thread, save, train
from glassformer.train.metrics import loss_fn
from glassformer.train.tasks import get_task

NAME = "post-ln-vs-pre-ln"
DESCRIPTION = "Post-LN vs Pre-LN: which needs warm-up, and at which learning rates each trains (12 layers, reverse, several seeds)."
SIZES = dict(d_model=32, n_layers=12, n_heads=4)
TRAINS = 0.9  # token accuracy that counts as "trained"


def _task(seed: int):
    return get_task("reverse", length=5, vocab_size=6, seed=seed)


def gradient_norms(norm_position: str, seed: int) -> list[float]:
    """|dL/dW| of each block's weight matrices (all of them together) at initialisation, first to last layer."""
    task = _task(seed)
    model = model_for(task, "decoder", seed=seed, norm_position=norm_position, **SIZES)
    batch = task.batch(256, "decoder", generator=torch.Generator().manual_seed(seed))
    loss_fn(model(batch.inputs), batch).backward()
    return [float(torch.sqrt(sum(p.grad.pow(2).sum() for n, p in block.named_parameters() if p.dim() >= 2)))
            for block in model.blocks]


def one_run(args: tuple) -> float:
    """Held-out token accuracy of one (norm_position, lr, warm-up, seed) run."""
    norm_position, lr, warmup, seed, steps = args
    with one_thread():
        task = _task(seed)
        model = model_for(task, "decoder", seed=seed, norm_position=norm_position, **SIZES)
        summary, _ = train(model, task, steps=steps, lr=lr, seed=seed, warmup_steps=warmup, grad_clip=None, beta2=0.98,
                           eval_batches=4)
    return summary["token_accuracy"]


def run(out: Path, *, quick: bool = False, seed: int = 0, full: bool = False) -> ExperimentResult:
    steps = 300
    lrs = [1e-3, 5e-3, 1e-2, 2e-2] if full else [1e-2]
    seeds = [seed] if quick else [seed, seed + 1, seed + 2] if full else [seed, seed + 1]
    warmups = {"no warm-up": 0, "warm-up": steps // 3}
    cells = [(pos, w) for pos in ("post", "pre") for w in warmups if not (quick and (pos, w) == ("pre", "warm-up"))]
    grid = [(pos, lr, warmups[w], s, steps) for pos, w in cells for lr in lrs for s in seeds]
    with one_thread():
        grads = {pos: gradient_norms(pos, seed) for pos in ("post", "pre")}
    if len(grid) <= 4:
        accs = [one_run(args) for args in grid]
    else:
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            accs = list(pool.map(one_run, grid))
    acc = {}  # (pos, warm-up name, lr) -> mean accuracy over seeds
    for (pos, lr, w, s, _), a in zip(grid, accs):
        key = (pos, next(k for k, v in warmups.items() if v == w), lr)
        acc.setdefault(key, []).append(a)
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    nan = float("nan")

    fig, (ax1, ax2) = figure(2, width=5.0)
    layers = range(1, SIZES["n_layers"] + 1)
    for pos, style in (("post", "o-"), ("pre", "s-")):
        ax1.plot(layers, grads[pos], style, label=f"{pos.capitalize()}-LN")
    ax1.set_yscale("log")
    ax1.set_xlabel("layer")
    ax1.set_ylabel("|dL/dW| at initialisation")
    ax1.set_title("gradient norm by layer")
    ax1.legend()
    for (pos, colour) in (("post", "#c0504d"), ("pre", "#4f81bd")):
        for w, style in (("no warm-up", "--"), ("warm-up", "-")):
            if (pos, w) in cells:
                ax2.plot(lrs, [100 * mean[(pos, w, lr)] for lr in lrs], style, color=colour, marker="o",
                         label=f"{pos.capitalize()}-LN, {w}")
    ax2.set_xscale("log")
    ax2.set_ylim(0, 105)
    ax2.set_xlabel("peak learning rate (AdamW)")
    ax2.set_ylabel(f"token accuracy (%), {len(seeds)} seed(s)")
    ax2.set_title(f"reverse, {SIZES['n_layers']} layers, {steps} steps")
    ax2.legend(fontsize=8)
    figures = [save(fig, out, "post_vs_pre_ln.png")]

    def trained_at(pos: str, w: str) -> list[float]:
        return [lr for lr in lrs if mean.get((pos, w, lr), nan) >= TRAINS]

    def describe(lrs_ok: list[float]) -> str:
        return "none of the rates tried" if not lrs_ok else ", ".join(f"{lr:g}" for lr in lrs_ok)

    def spread(g: list[float]) -> str:
        return f"{min(g):.2g}-{max(g):.2g} (first layer {g[0]:.2g}, last {g[-1]:.2g})"

    def evenness(g: list[float]) -> str:
        ratio = max(g) / min(g)
        if ratio < 1.5:
            return f"even across depth (largest/smallest {ratio:.1f})"
        top = "last" if g.index(max(g)) == len(g) - 1 else "first" if g.index(max(g)) == 0 else f"layer {g.index(max(g)) + 1}"
        return f"uneven (largest/smallest {ratio:.1f}, largest in the {top} layer)"

    post_top_heavy = grads["post"][-1] > grads["post"][0]
    finding = (
        f"At initialisation (GPT-2 init, std 0.02) the weight-gradient norms per layer are {spread(grads['post'])} for "
        f"Post-LN, {evenness(grads['post'])}, and {spread(grads['pre'])} for Pre-LN, {evenness(grads['pre'])}"
        + (". Post-LN's grow toward the output, the pattern Xiong et al. link to its need for warm-up. " if post_top_heavy
           else ". Post-LN's do not grow toward the output here, so this run does not show the gradient pattern Xiong et al. "
                "describe. ")
        +
        f"Trained {steps} steps (accuracy >= {100 * TRAINS:.0f}% counts as trained, mean over {len(seeds)} seed(s)): "
        f"Post-LN trained at lr {describe(trained_at('post', 'no warm-up'))} without warm-up and "
        f"{describe(trained_at('post', 'warm-up'))} with it; Pre-LN at {describe(trained_at('pre', 'no warm-up'))} without"
        + (f" and {describe(trained_at('pre', 'warm-up'))} with. " if ("pre", "warm-up") in cells else " (not run with warm-up here). ")
    )
    for lr in lrs:
        counts = ", ".join(f"{pos.capitalize()}-LN {w} {sum(a >= TRAINS for a in acc[(pos, w, lr)])}/{len(seeds)}"
                           for pos, w in cells)
        finding += f"Seeds that trained at lr {lr:g}: {counts}. "
    top = lrs[-1]
    finding += (
        f"At the largest rate, {top:g}, Pre-LN reached {100 * mean[('pre', 'no warm-up', top)]:.0f}% without warm-up"
        + (f" and {100 * mean[('pre', 'warm-up', top)]:.0f}% with it" if ("pre", "warm-up") in cells else "")
        + f", Post-LN {100 * mean[('post', 'no warm-up', top)]:.0f}% without and {100 * mean[('post', 'warm-up', top)]:.0f}% with."
    )
    best = {pos: max([lr for w in warmups for lr in trained_at(pos, w)], default=None) for pos in ("post", "pre")}
    if best["pre"] and best["post"] and best["pre"] > best["post"]:
        finding += f" Pre-LN trained at up to {best['pre'] / best['post']:.0f}x the largest rate at which Post-LN trained."
    for pos in [p for p in ("post", "pre") if (p, "warm-up") in cells]:
        helped = [lr for lr in lrs if mean[(pos, "warm-up", lr)] > mean[(pos, "no warm-up", lr)] + 0.1]
        hurt = [lr for lr in lrs if mean[(pos, "warm-up", lr)] < mean[(pos, "no warm-up", lr)] - 0.1]
        finding += (f" Warm-up helped {pos.capitalize()}-LN at {describe(helped)} and hurt it at {describe(hurt)}"
                    f"{' (a short run: 30% of the steps spent at low rates)' if hurt else ''}.")
    post_needs = [lr for lr in lrs if mean[("post", "no warm-up", lr)] < TRAINS <= mean[("post", "warm-up", lr)]]
    if post_needs:
        finding += (f" At lr {describe(post_needs)} Post-LN failed without warm-up and trained with it: Xiong et al.'s "
                    f"result, reproduced here.")
    else:
        finding += (" At no rate tried did Post-LN fail without warm-up and train with it, so this run does not show "
                    "that Post-LN needs warm-up" + (" (one seed; the default runs two, --full three)." if quick else "."))
    metrics = {"grad_norm_by_layer": grads, "post_ln_needed_warmup_at": post_needs,
               "token_accuracy": {f"{p}|{w}|{lr:g}": v for (p, w, lr), v in mean.items()},
               "steps": steps, "seeds": seeds,
               "token_accuracy_by_seed": {f"{p}|{w}|{lr:g}": v for (p, w, lr), v in acc.items()}}
    return ExperimentResult(finding, metrics, figures)
