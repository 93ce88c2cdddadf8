"""Why divide the attention scores by sqrt(d_k)?

If the entries of q and k have unit variance, q . k is a sum of d_k unit-variance products, so its
standard deviation is sqrt(d_k). Without the scale the scores spread further apart as heads get wider,
softmax saturates (one key takes almost all the weight), and the gradient that reaches the scores,
dS = P * (dP - sum(dP * P)), vanishes with it, because a saturated P is nearly one-hot. Dividing by
sqrt(d_k) keeps the scores at unit variance for every width.

The experiment runs the model's own :class:`~glassformer.model.attention.Attention` (one head, random
orthogonal W_Q and W_K so q and k have unit-variance entries) at several d_k, with ``attn_scale=1``
(no scale) and with the default 1/sqrt(d_k), and measures the spread of the scores, how saturated the
softmax is (the largest weight in each row, and the entropy), and the size of the gradient at the scores (dL/dS for a random upstream gradient, in the median row).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from glassformer.explain.experiments import ExperimentResult
from glassformer.explain.experiments._common import figure, one_thread, save
from glassformer.model import ModelConfig
from glassformer.model.attention import Attention

NAME = "attention-scale"
DESCRIPTION = "Why divide scores by sqrt(d_k)? Softmax saturation and gradient size as d_k grows, with and without the scale."


def measure(d_k: int, scaled: bool, n_keys: int, n_samples: int, generator: torch.Generator) -> dict[str, float]:
    """Score spread, softmax saturation and gradient size of one attention head of width d_k."""
    cfg = ModelConfig(d_model=d_k, n_heads=1, d_vocab=2, bias=False, attn_scale=None if scaled else 1.0)
    attn = Attention(cfg, causal=False).double()
    with torch.no_grad():
        for W in (attn.W_Q, attn.W_K, attn.W_V, attn.W_O):  # orthogonal: unit-variance inputs stay unit-variance
            W.copy_(torch.linalg.qr(torch.randn(d_k, d_k, generator=generator, dtype=torch.float64))[0][None])
        attn.W_V /= math.sqrt(d_k)  # unit-norm values, so the gradient arriving at the pattern does not grow with d_k
    seen = {}

    def keep(x, hook):
        x.retain_grad()
        seen[hook.name] = x

    attn.scores.name, attn.pattern.name = "scores", "pattern"  # a lone module's hook points have no names yet
    attn.scores.fns.append(keep)
    attn.pattern.fns.append(keep)
    x = torch.randn(n_samples, n_keys, d_k, generator=generator, dtype=torch.float64)  # [batch, pos, d_k]
    out = attn(x, positions=torch.arange(n_keys))  # [batch, pos, d_k]
    upstream = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    (out * upstream).sum().backward()
    scores, pattern = seen["scores"], seen["pattern"]  # [batch, 1, pos, pos]
    entropy = -(pattern * pattern.clamp_min(1e-300).log()).sum(-1)  # [batch, 1, pos]
    return {
        "score_std": float(scores.detach().std()),
        "max_weight": float(pattern.detach().max(-1).values.mean()),
        "entropy_bits": float(entropy.detach().mean() / math.log(2)),
        "grad_scores": float(scores.grad.norm(dim=-1).median()),  # |dL/dS| of the typical (median) row
    }


def run(out: Path, *, quick: bool = False, seed: int = 0) -> ExperimentResult:
    widths = [4, 64, 1024] if quick else [4, 16, 64, 256, 1024]
    n_keys, n_samples = 16, (64 if quick else 256)
    g = torch.Generator().manual_seed(seed)
    results = {"scaled": {}, "unscaled": {}}
    with one_thread():
        for d_k in widths:
            for key, scaled in (("scaled", True), ("unscaled", False)):
                results[key][d_k] = measure(d_k, scaled, n_keys, n_samples, g)

    fig, axes = figure(4, width=3.6)
    panels = [("score_std", "std of scores", True), ("max_weight", "largest weight per row", False),
              ("entropy_bits", "entropy of a row (bits)", False), ("grad_scores", "median |dL/dscores| of a row", True)]
    for ax, (key, label, log) in zip(axes, panels):
        for name, style in (("unscaled", "o-"), ("scaled", "s-")):
            ax.plot(widths, [results[name][d][key] for d in widths], style, label="q·k" if name == "unscaled" else "q·k / √d_k")
        ax.set_xscale("log", base=2)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("d_k (head width)")
        ax.set_title(label)
    axes[2].axhline(math.log2(n_keys), color="grey", lw=0.8, ls=":")
    axes[0].legend()
    fig.suptitle(f"One attention head, {n_keys} keys, unit-variance q and k")
    figures = [save(fig, out, "attention_scale.png")]

    big, small = widths[-1], widths[0]
    u, s = results["unscaled"][big], results["scaled"][big]
    finding = (
        f"Without the scale the scores' standard deviation grows like sqrt(d_k): {results['unscaled'][small]['score_std']:.1f} at "
        f"d_k = {small}, {u['score_std']:.1f} at d_k = {big}. "
        + ("The softmax saturates: " if u["max_weight"] > 0.9 else "The softmax does not saturate here: ")
        + f"at d_k = {big} the largest weight in a "
        f"row averages {u['max_weight']:.2f} (entropy {u['entropy_bits']:.2f} bits of a possible {math.log2(n_keys):.0f}), "
        f"and the gradient reaching the scores of a typical row (the median) is {u['grad_scores']:.2g}, "
        f"{s['grad_scores'] / max(u['grad_scores'], 1e-300):.2g}x smaller than with the scale"
        + (": a saturated softmax passes almost no gradient back. " if s["grad_scores"] > 100 * u["grad_scores"] else ". ")
        + ("Dividing by sqrt(d_k) keeps all of them flat across widths: " if all(
            0.8 < results["scaled"][d]["score_std"] < 1.25 for d in widths) else "With the scale: ")
        + f"score std "
        f"{min(results['scaled'][d]['score_std'] for d in widths):.2f}-{max(results['scaled'][d]['score_std'] for d in widths):.2f}, "
        f"largest weight {s['max_weight']:.2f}, gradient {s['grad_scores']:.2g}."
    )
    metrics = {k: {str(d): v for d, v in r.items()} for k, r in results.items()}
    return ExperimentResult(finding, metrics, figures)
