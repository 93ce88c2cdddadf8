"""Induction heads (Elhage et al. 2021; Olsson et al. 2022) in a 2-layer attention-only transformer.

Trained on rows of random segments each followed by its copy (``lens.toys.RepeatedSegments``), the
model can only predict a copy by finding the earlier occurrence of the current token and copying the
token after it. That needs two heads in two layers: a *previous-token head* in layer 0 writes "the
token before me was A" into each position, and an *induction head* in layer 1 whose keys read that
(K-composition) attends from the current A to the position after the earlier A and copies its token.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from glassformer.explain.experiments import ExperimentResult
from glassformer.lens import composition_scores, detect_heads, fold_weights, repeated_random_tokens, run_ablated
from glassformer.lens.detectors import attention_patterns
from glassformer.lens.toys import train_induction_model
from glassformer.viz.lens_plots import plot_curves, plot_head_scores, plot_heatmap
from glassformer.viz.patterns import plot_layer

NAME = "induction-heads"
DESCRIPTION = "Does a 2-layer attention-only transformer learn a previous-token head and an induction head that compose?"

QUICK = {"steps": 1000, "d_model": 32, "n_heads": 2, "n_ctx": 24, "max_len": 8, "lr": 3e-3}
FULL = {"steps": 2000, "d_model": 64, "n_heads": 4, "n_ctx": 32, "max_len": 10, "lr": 1e-3}
D_VOCAB = 32  # RepeatedSegments' default vocabulary


def per_position_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """-log p(tokens[:, i+1] | tokens[:, :i+1]) averaged over the batch: [pos - 1]."""
    log_probs = logits[:, :-1].float().log_softmax(-1)  # [batch, pos - 1, d_vocab]
    return -log_probs.gather(-1, tokens[:, 1:, None])[..., 0].mean(0)


def repeat_losses(model, tokens: torch.Tensor, half: int, **ablation) -> tuple[float, float]:
    """(mean loss on the first occurrence's predictable tokens, mean loss on the repeat's) for rows ``r r``."""
    with torch.no_grad():
        logits = run_ablated(model, tokens, **ablation) if ablation else model(tokens)
    loss = per_position_loss(logits, tokens)  # predicting token i + 1 from position i
    return float(loss[: half - 1].mean()), float(loss[half:].mean())  # the repeat's first token is unpredictable


def run(out: Path, *, quick: bool = False, seed: int = 0) -> ExperimentResult:
    out = Path(out)
    settings = QUICK if quick else FULL
    model, losses = train_induction_model(seed=seed, **settings)
    half = settings["max_len"]
    tokens = repeated_random_tokens(D_VOCAB, half, 64, generator=torch.Generator().manual_seed(seed + 1))  # [64, 2 * half]

    first, repeat = repeat_losses(model, tokens, half)
    scores = detect_heads(model, tokens, detectors=("previous_token", "induction"))
    prev_head = int(scores["previous_token"][0].argmax())
    ind_head = int(scores["induction"][1].argmax())
    prev_score, ind_score = float(scores["previous_token"][0, prev_head]), float(scores["induction"][1, ind_head])

    folded = fold_weights(model)  # norm gains folded in: the circuits below are the ones the model runs
    k_comp = composition_scores(folded, "k")[0, :, 1, :]  # [layer-0 heads, layer-1 heads]
    pair = float(k_comp[prev_head, ind_head])
    others = k_comp.flatten()[torch.arange(k_comp.numel()) != prev_head * k_comp.shape[1] + ind_head]
    baseline = float(others.mean()) if others.numel() else float("nan")
    q_comp = float(composition_scores(folded, "q")[0, prev_head, 1, ind_head])
    v_comp = float(composition_scores(folded, "v")[0, prev_head, 1, ind_head])

    _, repeat_no_ind = repeat_losses(model, tokens, half, heads=[(1, ind_head)])
    _, repeat_no_prev = repeat_losses(model, tokens, half, heads=[(0, prev_head)])
    _, repeat_no_layer1 = repeat_losses(model, tokens, half, heads=[(1, h) for h in range(model.config.n_heads)])

    figures = []
    window = 50
    smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
    plot_curves({"training loss (50-step mean)": (range(1, len(losses) + 1), smooth)}, ylabel="nats", title="training",
                path=out / "training_loss.png")
    figures.append(out / "training_loss.png")
    loss = per_position_loss(model(tokens).detach(), tokens)
    plot_curves({"loss at each position": (range(1, 2 * half), loss.tolist())}, xlabel="position of the predicted token",
                ylabel="nats", title=f"in-context loss on r r ({half} random tokens, repeated)", path=out / "loss_by_position.png")
    figures.append(out / "loss_by_position.png")
    plot_head_scores(scores, title="head detectors on repeated random tokens", path=out / "head_scores.png")
    figures.append(out / "head_scores.png")
    patterns = attention_patterns(model, tokens[:1])[:, 0]  # [layers, heads, q, k]
    labels = [model_token(t) for t in tokens[0]]
    for layer in range(2):
        plot_layer(patterns[layer], labels, layer=layer, title=f"layer {layer} on one repeated sequence", path=out / f"attention_layer{layer}.png")
        figures.append(out / f"attention_layer{layer}.png")
    n0, n1 = k_comp.shape
    plot_heatmap(k_comp, [f"L0H{h}" for h in range(n0)], [f"L1H{h}" for h in range(n1)], title="K-composition (folded weights)",
                 colorbar_label="composition score", xlabel="reader (layer 1)", ylabel="writer (layer 0)", path=out / "k_composition.png")
    figures.append(out / "k_composition.png")

    finding = (
        f"After {settings['steps']} training steps, on random sequences of {half} tokens shown twice, the loss drops "
        f"from {first:.2f} nats on the first occurrence (uniform guessing over {D_VOCAB} tokens: {math.log(D_VOCAB):.2f}) "
        f"to {repeat:.2f} nats on the repeat. Head L0H{prev_head} is a previous-token head (score {prev_score:.2f}: that share "
        f"of its attention goes to the previous position) and L1H{ind_head} an induction head (score {ind_score:.2f} on the "
        f"token after the earlier copy). In the folded weights, L1H{ind_head}'s keys read L0H{prev_head}'s output: "
        f"K-composition {pair:.3f} against a mean of {baseline:.3f} over the other layer-0/layer-1 pairs "
        f"(Q-composition {q_comp:.3f}, V-composition {v_comp:.3f} for the same pair). Zero-ablating the induction head "
        f"raises the repeat loss from {repeat:.2f} to {repeat_no_ind:.2f} nats, the previous-token head to {repeat_no_prev:.2f}, "
        f"all of layer 1's heads to {repeat_no_layer1:.2f}."
    )
    metrics = {
        "steps": settings["steps"], "final_train_loss": sum(losses[-50:]) / len(losses[-50:]),
        "loss_first_occurrence": first, "loss_repeat": repeat, "in_context_loss_drop": first - repeat,
        "previous_token_head": f"L0H{prev_head}", "previous_token_score": prev_score,
        "induction_head": f"L1H{ind_head}", "induction_score": ind_score,
        "k_composition": pair, "k_composition_other_pairs": baseline, "q_composition": q_comp, "v_composition": v_comp,
        "loss_repeat_without_induction_head": repeat_no_ind, "loss_repeat_without_previous_token_head": repeat_no_prev,
        "loss_repeat_without_layer1": repeat_no_layer1,
    }
    return ExperimentResult(finding, metrics, figures)


def model_token(token: torch.Tensor) -> str:
    """A token id as a short label (the experiment's tokens have no text)."""
    return str(int(token))
