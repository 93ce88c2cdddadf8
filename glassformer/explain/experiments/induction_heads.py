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
from glassformer.lens.induction import induction_scores
from glassformer.lens.toys import RepeatedSegments, induction_config
from glassformer.model import Transformer
from glassformer.viz.lens_plots import plot_curves, plot_head_scores, plot_heatmap
from glassformer.viz.patterns import plot_layer

NAME = "induction-heads"
DESCRIPTION = "Does a 2-layer attention-only transformer learn a previous-token head and an induction head that compose, and when?"

QUICK = {"steps": 1000, "d_model": 32, "n_heads": 2, "n_ctx": 24, "max_len": 8, "lr": 3e-3, "snap_every": 100}
DEFAULT = {"steps": 1500, "d_model": 32, "n_heads": 2, "n_ctx": 24, "max_len": 8, "lr": 3e-3, "snap_every": 50}
FULL = {"steps": 3000, "d_model": 64, "n_heads": 4, "n_ctx": 32, "max_len": 10, "lr": 1e-3, "snap_every": 100}
D_VOCAB = 32  # RepeatedSegments' default vocabulary
FORMED = 0.5  # a detector score at least this high names a head (half its attention on the expected key)
LEARNED = 1.0  # an in-context loss drop (first occurrence - repeat) of at least this many nats counts as learned


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


def head_scores(model, tokens: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(previous-token scores of layer 0 [heads], induction scores of layer 1 [heads] over several repeat lengths)."""
    prev = detect_heads(model, tokens, detectors=("previous_token",))["previous_token"][0]  # [heads]
    ind = induction_scores(model, seed=seed).scores[1]  # [heads]
    return prev, ind


def train_with_snapshots(s: dict, seed: int, tokens: torch.Tensor):
    """Train the 2-layer attention-only model on RepeatedSegments, measuring every ``snap_every`` steps the
    repeat loss and the best head scores. Returns (model in eval mode, per-step losses, snapshots)."""
    from glassformer.train.trainer import TrainConfig, Trainer

    torch.manual_seed(seed)
    task = RepeatedSegments(n_ctx=s["n_ctx"], max_len=s["max_len"], seed=seed)
    model = Transformer(induction_config(task.d_vocab, s["n_ctx"], s["d_model"], s["n_heads"]))
    config = TrainConfig(steps=s["steps"], batch_size=32, lr=s["lr"], warmup_steps=min(100, s["steps"] // 10),
                         weight_decay=0.01, eval_every=0, eval_batches=1, seed=seed, device="cpu", quiet=True)
    trainer = Trainer(model, task, config)
    half = s["max_len"]
    snaps = {"step": [], "loss_first": [], "loss_repeat": [], "previous_token": [], "induction": []}
    for step in range(0, s["steps"] + 1):
        if step:
            trainer.train_step()
        if step % s["snap_every"] == 0 or step == s["steps"]:
            model.eval()
            first, repeat = repeat_losses(model, tokens, half)
            prev, ind = head_scores(model, tokens, seed)
            model.train()
            for k, v in zip(snaps, (step, first, repeat, float(prev.max()), float(ind.max()))):
                snaps[k].append(v)
    return model.eval(), list(trainer.losses), snaps


def run(out: Path, *, quick: bool = False, seed: int = 0, full: bool = False) -> ExperimentResult:
    out = Path(out)
    settings = QUICK if quick else FULL if full else DEFAULT
    half = settings["max_len"]
    tokens = repeated_random_tokens(D_VOCAB, half, 64, generator=torch.Generator().manual_seed(seed + 1))  # [64, 2 * half]
    model, losses, snaps = train_with_snapshots(settings, seed, tokens)

    first, repeat = repeat_losses(model, tokens, half)
    prev_scores, ind_scores = head_scores(model, tokens, seed)  # [heads], [heads]
    prev_head, ind_head = int(prev_scores.argmax()), int(ind_scores.argmax())
    prev_score, ind_score = float(prev_scores[prev_head]), float(ind_scores[ind_head])
    prev_formed, ind_formed, learned = prev_score >= FORMED, ind_score >= FORMED, first - repeat >= LEARNED

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

    # the phase change: the first snapshot where the best induction score passes FORMED
    change = next((st for st, v in zip(snaps["step"], snaps["induction"]) if v >= FORMED), None)

    figures = []
    window = 50
    smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
    plot_curves({"training loss (50-step mean)": (range(1, len(losses) + 1), smooth)}, ylabel="nats", title="training",
                path=out / "training_loss.png")
    figures.append(out / "training_loss.png")
    _plot_phase_change(snaps, change, out / "phase_change.png")
    figures.append(out / "phase_change.png")
    loss = per_position_loss(model(tokens).detach(), tokens)
    plot_curves({"loss at each position": (range(1, 2 * half), loss.tolist())}, xlabel="position of the predicted token",
                ylabel="nats", title=f"in-context loss on r r ({half} random tokens, repeated)", path=out / "loss_by_position.png")
    figures.append(out / "loss_by_position.png")
    scores = detect_heads(model, tokens, detectors=("previous_token", "induction"))
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
        f"After {settings['steps']} training steps, on random sequences of {half} tokens shown twice, the loss is "
        f"{first:.2f} nats on the first occurrence (uniform guessing over {D_VOCAB} tokens: {math.log(D_VOCAB):.2f}) and "
        f"{repeat:.2f} nats on the repeat: "
        + (f"the model uses the context to predict the copy. " if learned else
           f"a drop under {LEARNED:.0f} nat, so the model has not learned to copy from context in this run. ")
        + f"The best layer-0 previous-token score is {prev_score:.2f} (L0H{prev_head}; that share of its attention goes to "
        f"the previous position) and the best layer-1 induction score {ind_score:.2f} (L1H{ind_head}; averaged over repeat "
        f"lengths {', '.join(map(str, induction_scores(model, seed=seed).lengths))}). "
    )
    if prev_formed and ind_formed:
        finding += (
            f"Both pass {FORMED}: L0H{prev_head} acts as a previous-token head and L1H{ind_head} as an induction head. "
            f"In the folded weights, K-composition of the pair is {pair:.3f} against a mean of {baseline:.3f} over the "
            f"other layer-0/layer-1 pairs (Q-composition {q_comp:.3f}, V-composition {v_comp:.3f})"
            + (", so L1H{0}'s keys read L0H{1}'s output. ".format(ind_head, prev_head) if pair > baseline else
               ", no higher than the other pairs, so the weights do not single this pair out. ")
        )
    else:
        missing = [name for name, ok in (("previous-token", prev_formed), ("induction", ind_formed)) if not ok]
        finding += (f"No {' or '.join(missing)} head formed (score below {FORMED}), so this run shows no induction "
                    f"circuit; a longer run (--full, or more steps) may. ")
    finding += (
        f"Zero-ablating L1H{ind_head} raises the repeat loss from {repeat:.2f} to {repeat_no_ind:.2f} nats, L0H{prev_head} "
        f"to {repeat_no_prev:.2f}, all of layer 1's heads to {repeat_no_layer1:.2f}. "
    )
    if change is not None:
        i = snaps["step"].index(change)
        before = snaps["loss_repeat"][max(0, i - 1)]
        finding += (f"Over training (snapshots every {settings['snap_every']} steps) the best induction score first "
                    f"passed {FORMED} at step {change}; the repeat loss was {snaps['loss_repeat'][0]:.2f} at step 0, "
                    f"{before:.2f} one snapshot before and {snaps['loss_repeat'][-1]:.2f} at the end "
                    f"(phase_change.png shows whether the drop is abrupt).")
    else:
        finding += f"No snapshot (every {settings['snap_every']} steps) had an induction score of {FORMED} or more."
    metrics = {
        "steps": settings["steps"], "final_train_loss": sum(losses[-50:]) / len(losses[-50:]),
        "loss_first_occurrence": first, "loss_repeat": repeat, "in_context_loss_drop": first - repeat,
        "previous_token_head": f"L0H{prev_head}", "previous_token_score": prev_score,
        "induction_head": f"L1H{ind_head}", "induction_score": ind_score,
        "previous_token_head_formed": prev_formed, "induction_head_formed": ind_formed,
        "k_composition": pair, "k_composition_other_pairs": baseline, "q_composition": q_comp, "v_composition": v_comp,
        "loss_repeat_without_induction_head": repeat_no_ind, "loss_repeat_without_previous_token_head": repeat_no_prev,
        "loss_repeat_without_layer1": repeat_no_layer1, "phase_change_step": change, "snapshots": snaps,
    }
    return ExperimentResult(finding, metrics, figures)


def _plot_phase_change(snaps: dict, change: int | None, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.plot(snaps["step"], snaps["loss_first"], color="#999999", label="loss, first occurrence")
    ax.plot(snaps["step"], snaps["loss_repeat"], color="#c0392b", label="loss, repeat")
    ax.set_xlabel("training step")
    ax.set_ylabel("nats")
    right = ax.twinx()
    right.plot(snaps["step"], snaps["previous_token"], "--", color="#2e86c1", label="best previous-token score (L0)")
    right.plot(snaps["step"], snaps["induction"], "--", color="#27ae60", label="best induction score (L1)")
    right.set_ylim(0, 1.05)
    right.set_ylabel("head score")
    if change is not None:
        ax.axvline(change, color="#27ae60", alpha=0.3, label=f"induction score passes 0.5 (step {change})")
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="center right")
    ax.set_title("the phase change: repeat loss and head scores over training", fontsize=9)
    fig.savefig(path, dpi=110)


def model_token(token: torch.Tensor) -> str:
    """A token id as a short label (the experiment's tokens have no text)."""
    return str(int(token))
