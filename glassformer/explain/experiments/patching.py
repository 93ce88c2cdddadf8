"""Activation patching: which activations carry the answer in an induction task?

The model is the 2-layer attention-only transformer of the induction-head experiment. The clean
input is a random sequence ``x_0 .. x_{n-1}`` followed by its repeat up to ``x_{n-2}'``, so the next
token is ``x_{n-1}``, copied by induction. The corrupted input replaces the first ``x_{n-1}`` by a
token ``c`` that occurs nowhere else, so induction now answers ``c``. With the metric
``m = logit(x_{n-1}) - logit(c)`` at the last position, each activation of the clean run is copied
into the corrupted run, one at a time; the fraction of ``m(clean) - m(corrupted)`` it restores says
how much of the answer passes through it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from glassformer.explain.experiments import ExperimentResult
from glassformer.explain.experiments.induction_heads import D_VOCAB, QUICK
from glassformer.lens import logit_diff_metric, patch_heads, patch_layers_positions, repeated_random_tokens
from glassformer.lens.toys import train_induction_model

FULL = {"steps": 2000, "d_model": 64, "n_heads": 4, "n_ctx": 32, "max_len": 10, "lr": 1e-3}  # the default run

NAME = "patching"
DESCRIPTION = "Which residual-stream positions and which heads carry the answer of an induction task? (activation patching)"


def clean_and_corrupted(n: int, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean [batch, 2n - 1], corrupted, answer [batch], wrong [batch]) as described in the module docstring."""
    clean = repeated_random_tokens(D_VOCAB, n, batch, generator=generator)[:, : 2 * n - 1]  # x_0..x_{n-1} x_0'..x_{n-2}'
    answer = clean[:, n - 1].clone()
    wrong = torch.empty_like(answer)
    for b in range(batch):  # a token that occurs nowhere in the row
        unused = torch.tensor([t for t in range(D_VOCAB) if t not in set(clean[b].tolist())])
        wrong[b] = unused[torch.randint(len(unused), (1,), generator=generator)]
    corrupted = clean.clone()
    corrupted[:, n - 1] = wrong
    return clean, corrupted, answer, wrong


def run(out: Path, *, quick: bool = False, seed: int = 0) -> ExperimentResult:
    out = Path(out)
    settings = {k: v for k, v in (QUICK if quick else FULL).items() if k != "snap_every"}  # train_induction_model's arguments
    model, _ = train_induction_model(seed=seed, **settings)
    n = settings["max_len"]
    clean, corrupted, answer, wrong = clean_and_corrupted(n, 32, torch.Generator().manual_seed(seed + 2))
    metric = logit_diff_metric(answer, wrong)
    labels = [f"x{i}" for i in range(n)] + [f"x{i}'" for i in range(n - 1)]

    resid_pre = patch_layers_positions(model, clean, corrupted, metric, hook="resid_pre", position_labels=labels)
    resid_post = patch_layers_positions(model, clean, corrupted, metric, hook="resid_post", position_labels=labels)
    heads = patch_heads(model, clean, corrupted, metric)
    resid_pre.plot(out / "patch_resid_pre.png", title="patching resid_pre (layer input), by position")
    resid_post.plot(out / "patch_resid_post.png", title="patching resid_post (layer output), by position")
    heads.plot(out / "patch_heads.png", title="patching each head's z (all positions)")

    values = heads.values  # [layers, heads]: restored fraction per head
    n_layers, n_heads = values.shape
    carriers = [(l, h) for l in range(n_layers) for h in range(n_heads) if float(values[l, h]) > 0.1]
    carried = sum(float(values[l, h]) for l, h in carriers)
    layer0_max = float(values[0].abs().max())
    named = ", ".join(f"L{l}H{h} ({float(values[l, h]):.0%})" for l, h in carriers) or "none"
    post_layer0_best = int(resid_post.values[0].argmax())
    post_layer1_best = int(resid_post.values[1].argmax())
    finding = (
        f"On clean inputs the model prefers the induction answer by {heads.clean:.2f} logits; on corrupted ones by "
        f"{heads.corrupted:.2f}{' (it follows the corrupted copy)' if heads.corrupted < 0 else ''}. Patching one head's output at a time, the heads that "
        f"restore more than 10% of that difference are {named}, {carried:.0%} together; no layer-0 head restores more "
        f"than {layer0_max:.0%}"
        + (" (a previous-token head only writes keys, and the keys are the same in both runs). " if layer0_max < 0.2 else ". ")
        + f"In the residual stream the answer sits at position {labels[post_layer0_best]} after layer 0 "
        f"(patching it restores {float(resid_post.values[0, post_layer0_best]):.0%}) and at position "
        f"{labels[post_layer1_best]} after layer 1 ({float(resid_post.values[1, post_layer1_best]):.0%})"
        + (": layer 1's heads move it." if labels[post_layer1_best] == labels[-1] and carriers and all(l == 1 for l, _ in carriers)
           else ".")
    )
    metrics = {
        "clean_logit_diff": heads.clean, "corrupted_logit_diff": heads.corrupted,
        "carrier_heads": [f"L{l}H{h}" for l, h in carriers], "carrier_heads_restored": carried, "layer0_max_restored": layer0_max,
        "head_restored": {f"L{l}H{h}": float(values[l, h]) for l in range(n_layers) for h in range(n_heads)},
        "resid_post_layer0_best_position": labels[post_layer0_best], "resid_post_layer0_best": float(resid_post.values[0, post_layer0_best]),
        "resid_post_layer1_best_position": labels[post_layer1_best], "resid_post_layer1_best": float(resid_post.values[1, post_layer1_best]),
        "resid_pre_layer0_at_answer": float(resid_pre.values[0, n - 1]),
    }
    figures = [out / "patch_resid_pre.png", out / "patch_resid_post.png", out / "patch_heads.png"]
    return ExperimentResult(finding, metrics, figures)
