"""The logit lens and the tuned lens on a character-level Shakespeare model.

A small decoder is trained on the first 90% of ``shared/data/shakespeare/tiny.txt``; on held-out
text, the residual stream after every layer is read out through the final norm and the unembedding
(logit lens) and through a tuned lens trained with the project's Trainer. How early does the stream
"know" the next character, and how much does a learned per-layer translator help?
"""

from __future__ import annotations

from pathlib import Path

import torch

from glassformer.errors import InputError
from glassformer.explain.experiments import ExperimentResult
from glassformer.lens import logit_lens, train_tuned_lens
from glassformer.lens.logit_lens import LensResult
from glassformer.viz.lens_plots import plot_curves, plot_logit_lens

NAME = "logit-lens-shakespeare"
DESCRIPTION = "After which layer does a character-level Shakespeare model know the next character? (logit and tuned lens)"

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "shakespeare" / "tiny.txt"
QUICK = {"d_model": 64, "n_layers": 3, "n_heads": 4, "block_size": 32, "batch_size": 16, "steps": 250, "lens_steps": 100, "lr": 3e-3}
DEFAULT = {"d_model": 64, "n_layers": 4, "n_heads": 4, "block_size": 48, "batch_size": 32, "steps": 600, "lens_steps": 150, "lr": 3e-3}
FULL = {"d_model": 128, "n_layers": 4, "n_heads": 4, "block_size": 64, "batch_size": 32, "steps": 1500, "lens_steps": 400, "lr": 2e-3}
SHOWN = "To be, or not to be, that is the question"  # the example line of the grid figure


def layer_stats(lens: LensResult, targets: torch.Tensor) -> dict[str, list[float]]:
    """Per lens layer: top-1 accuracy on the actual next token, its mean probability, and KL to the final layer."""
    top = lens.log_probs.argmax(-1)  # [layers, batch, pos]
    return {
        "accuracy": (top == targets[None]).float().mean((1, 2)).tolist(),
        "p_next": lens.prob_of(targets).mean((1, 2)).tolist(),
        "kl_to_final": lens.kl_to_final().mean((1, 2)).tolist(),
    }


def run(out: Path, *, quick: bool = False, seed: int = 0, full: bool = False) -> ExperimentResult:
    from glassformer.train import TextTask, TrainConfig, Trainer, model_for_task

    out = Path(out)
    if not DATA.is_file():
        raise InputError(f"the Shakespeare text is not at {DATA.resolve()} (shared/data beside the repository)")
    s = QUICK if quick else FULL if full else DEFAULT
    torch.manual_seed(seed)
    task = TextTask(DATA, block_size=s["block_size"], seed=seed)
    model = model_for_task(task, "decoder", d_model=s["d_model"], n_layers=s["n_layers"], n_heads=s["n_heads"])
    config = TrainConfig(steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"], warmup_steps=min(100, s["steps"] // 10),
                         eval_every=0, eval_batches=2, seed=seed, device="cpu", quiet=True)
    summary = Trainer(model, task, config).train()
    model.eval()

    held_out = task.with_split("val").batch(64, generator=torch.Generator().manual_seed(seed + 7))
    plain = logit_lens(model, held_out.inputs)
    tuned_lens = train_tuned_lens(model, task, steps=s["lens_steps"], batch_size=s["batch_size"], lr=1e-3, seed=seed)
    tuned = logit_lens(model, held_out.inputs, tuned=tuned_lens)
    stats, tuned_stats = layer_stats(plain, held_out.targets), layer_stats(tuned, held_out.targets)

    text = SHOWN[: s["block_size"]]
    shown = torch.tensor(task.tokenizer.encode(text))[None]  # [1, pos]
    grid = logit_lens(model, shown)
    probs, ids = grid.top_k(1)  # [layers, 1, pos, 1]
    chars = [[task.tokenizer.decode([int(i)]) for i in row] for row in ids[:, 0, :, 0]]
    plot_logit_lens(probs[:, 0, :, 0], chars, grid.labels, list(text), title="logit lens on a famous line", path=out / "logit_lens_grid.png")
    layers = list(range(len(plain.labels)))
    plot_curves({"logit lens": (layers, stats["kl_to_final"]), "tuned lens": (layers, tuned_stats["kl_to_final"])},
                xlabel="residual stream read (0 = embeddings, last = final)", ylabel="KL(final || lens), nats",
                title="distance to the model's own prediction", path=out / "kl_by_layer.png")
    plot_curves({"logit lens": (layers, stats["accuracy"]), "tuned lens": (layers, tuned_stats["accuracy"])},
                xlabel="residual stream read (0 = embeddings, last = final)", ylabel="top-1 accuracy on the next character",
                title="held-out next-character accuracy by layer", path=out / "accuracy_by_layer.png")

    mid = range(1, len(layers) - 1)
    plain_mid = sum(stats["kl_to_final"][i] for i in mid) / max(len(mid), 1)
    tuned_mid = sum(tuned_stats["kl_to_final"][i] for i in mid) / max(len(mid), 1)
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    acc, kl = stats["accuracy"], stats["kl_to_final"]
    rising = all(b >= a - 0.01 for a, b in zip(acc, acc[1:])) and acc[-1] > acc[0] + 0.05
    falling = all(b <= a + 0.01 for a, b in zip(kl, kl[1:]))
    finding = (
        f"A {s['n_layers']}-layer, d_model {s['d_model']} character model trained for {s['steps']} steps reaches "
        f"{summary['loss']:.2f} nats per character on held-out text. Read through the logit lens, the residual stream "
        f"predicts the next character with top-1 accuracy {fmt(acc)} at {', '.join(plain.labels)} "
        f"(0_pre is the embeddings alone, final the model's output)"
        + (": accuracy rises with depth, the prediction is assembled layer by layer. " if rising else
           ": accuracy does not rise steadily with depth in this run. ")
        + f"The KL divergence from the final prediction is {fmt(kl)} nats"
        + (" (falling with depth). " if falling else " (not falling steadily with depth). ")
        + f"A tuned lens (one affine map per layer, {s['lens_steps']} steps of the project's Trainer) gives mean KL "
        f"{tuned_mid:.2f} over the intermediate layers against {plain_mid:.2f} for the plain logit lens"
        + (": it reads them closer to the final prediction" if tuned_mid < plain_mid else
           ": no closer than the plain logit lens in this run")
        + f" (per layer: {fmt(tuned_stats['kl_to_final'])}; accuracy {fmt(tuned_stats['accuracy'])})."
    )
    metrics = {
        "held_out_loss": summary["loss"], "layers": plain.labels,
        "logit_lens": stats, "tuned_lens": tuned_stats,
        "intermediate_kl_logit_lens": plain_mid, "intermediate_kl_tuned_lens": tuned_mid,
        "tuned_lens_final_train_loss": sum(tuned_lens.losses[-20:]) / len(tuned_lens.losses[-20:]),
    }
    figures = [out / "logit_lens_grid.png", out / "kl_by_layer.png", out / "accuracy_by_layer.png"]
    return ExperimentResult(finding, metrics, figures)
