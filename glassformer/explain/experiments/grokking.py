"""Grokking (Power et al. 2022; Nanda et al. 2023): modular addition learned long after it is memorised.

A 1-layer transformer (ReLU MLP, no norms, no biases) is trained on ``a + b mod p`` (p = 113) for a fixed
30% of all pairs, in mini-batches of 512, with strong weight decay (AdamW, decay 1.0 on every matrix and
embedding); the default (under a minute) and quick versions use p = 53 and 40% of the pairs, ``--full`` the
p = 113 set-up of Nanda et al. Each trains until test accuracy reaches 99% (it has grokked) or its step budget
runs out, and says which. Training accuracy
reaches 100% early by memorising; test accuracy on the other 70% stays low, and only much later jumps
to 100% as weight decay trades the memorising solution for a smaller, general one. That solution is
a Fourier algorithm: the embedding of a number n becomes a few waves cos(2 pi k n / p), sin(2 pi k n / p)
at a handful of *key frequencies* k, visible as a few peaks in the discrete Fourier transform of W_E
over the number axis (at initialisation the power is spread over all frequencies).
"""

from __future__ import annotations

from pathlib import Path

import torch

from glassformer.explain.experiments import ExperimentResult
from glassformer.viz.lens_plots import plot_curves, save

NAME = "grokking"
DESCRIPTION = "Does a transformer trained on modular addition with weight decay generalise long after memorising, and how?"

FULL = {"p": 113, "train_fraction": 0.3, "d_model": 128, "steps": 12000, "batch_size": 512, "lr": 1e-3,
        "weight_decay": 1.0, "init_std": 0.08, "eval_every": 100}
DEFAULT = {"p": 53, "train_fraction": 0.4, "d_model": 64, "steps": 4000, "batch_size": 256, "lr": 3e-3,
           "weight_decay": 1.0, "init_std": 0.1, "eval_every": 50}  # a smaller prime: the same story in well under a minute
QUICK = {**DEFAULT, "steps": 1600}  # the tests' budget: enough at the seeds they run
GROKKED = 0.99  # test accuracy at which training stops: the model has generalised
TOP_K = 5  # the number of key frequencies the Fourier measure counts


def fourier_power(W_E: torch.Tensor, p: int) -> torch.Tensor:
    """Power of each frequency k = 1 .. p // 2 in the embeddings of the numbers 0 .. p-1:

        power[k] = sum_d |sum_n W_E[n, d] exp(-2 pi i k n / p)|^2        [p // 2]

    (k = 0, the mean over numbers, is left out: it carries no information about n)."""
    spectrum = torch.fft.rfft(W_E[:p].detach().double(), dim=0)  # [p // 2 + 1, d_model]
    return spectrum[1:].abs().pow(2).sum(-1)  # [p // 2]


def top_fraction(power: torch.Tensor, k: int = TOP_K) -> float:
    """Share of the power in the ``k`` strongest frequencies (k / len(power) if power is flat)."""
    return float(power.topk(k).values.sum() / power.sum())


@torch.no_grad()
def accuracy_and_loss(model, batch) -> tuple[float, float]:
    from glassformer.train.metrics import accuracy, loss_fn

    logits = model(batch.inputs)
    return accuracy(logits, batch)[0], float(loss_fn(logits, batch))


def run(out: Path, *, quick: bool = False, seed: int = 0, full: bool = False) -> ExperimentResult:
    from glassformer.train import TrainConfig, Trainer, model_for_task
    from glassformer.train.tasks import ModularAddition

    out = Path(out)
    s = QUICK if quick else FULL if full else DEFAULT
    p = s["p"]
    task = ModularAddition(p=p, train_fraction=s["train_fraction"], split_seed=seed, seed=seed)
    train_all, test_all = task.full_batch(), task.with_split("test").full_batch()
    torch.manual_seed(seed)
    model = model_for_task(task, "decoder", d_model=s["d_model"], n_layers=1, n_heads=4, d_mlp=4 * s["d_model"],
                           act="relu", norm="none", bias=False, init_std=s["init_std"])
    initial_power = fourier_power(model.embed.W_E, p)
    config = TrainConfig(steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"], min_lr=s["lr"], warmup_steps=10,
                         weight_decay=s["weight_decay"], decay_embeddings=True, beta2=0.98, grad_clip=None,
                         eval_every=0, seed=seed, device="cpu", quiet=True)
    trainer = Trainer(model, task, config)
    steps, curves = [], {"train accuracy": [], "test accuracy": [], "train loss": [], "test loss": []}
    for step in range(1, s["steps"] + 1):
        trainer.train_step()
        if step % s["eval_every"] == 0 or step == s["steps"]:
            model.eval()
            (train_acc, train_loss), (test_acc, test_loss) = accuracy_and_loss(model, train_all), accuracy_and_loss(model, test_all)
            model.train()
            steps.append(step)
            for name, value in zip(curves, (train_acc, test_acc, train_loss, test_loss)):
                curves[name].append(value)
            if test_acc >= GROKKED:
                break  # it has grokked: the rest of the budget would show nothing new
    model.eval()
    power = fourier_power(model.embed.W_E, p)

    def first_step(name: str, threshold: float) -> int | None:
        return next((st for st, v in zip(steps, curves[name]) if v >= threshold), None)

    memorised, generalised = first_step("train accuracy", 0.99), first_step("test accuracy", 0.95)
    test_at_memorised = curves["test accuracy"][steps.index(memorised)] if memorised else None
    key_frequencies = sorted(power.topk(TOP_K).indices.add(1).tolist())

    figures = [out / "accuracy.png", out / "loss.png", out / "embedding_fourier.png"]
    plot_curves({k: (steps, curves[k]) for k in ("train accuracy", "test accuracy")}, logx=True, ylabel="accuracy",
                title=f"a + b mod {p}: train on {s['train_fraction']:.0%} of the pairs", path=figures[0])
    plot_curves({k: (steps, curves[k]) for k in ("train loss", "test loss")}, logx=True, logy=True, ylabel="cross-entropy (nats)",
                title="loss", path=figures[1])
    _plot_spectrum(initial_power, power, p, figures[2])

    if generalised and memorised:
        delay = generalised / memorised
        when = (f"test accuracy passed 95% at step {generalised}, {delay:.1f}x later"
                + (" - generalisation long after memorisation: it grokked" if delay >= 1.5 and (test_at_memorised or 0) < 0.6
                   else " - too soon after memorising (or with test accuracy already high) to call it grokking"))
    elif memorised:
        when = (f"test accuracy had not reached 95% after the {steps[-1]}-step budget: this run memorised but did not grok "
                f"(more steps, --full, or another seed may)")
    else:
        when = f"training accuracy never reached 99% within {steps[-1]} steps: the run neither memorised nor grokked"
    init_share, final_share = top_fraction(initial_power), top_fraction(power)
    sparse = final_share > 2 * init_share
    finding = (
        f"With p = {p}, {len(train_all.inputs)} training pairs ({s['train_fraction']:.0%}) and weight decay "
        f"{s['weight_decay']}, training accuracy passed 99% at step {memorised} while test accuracy was "
        f"{(test_at_memorised or 0):.0%}; {when} (final: train {curves['train accuracy'][-1]:.0%}, test "
        f"{curves['test accuracy'][-1]:.0%}, after {steps[-1]} steps). "
        + ("The embedding became sparse in frequency (a few key frequencies: the Fourier algorithm): "
           if sparse else "The embedding did not concentrate in a few frequencies (less than twice its initial share): ")
        + f"its {TOP_K} strongest Fourier frequencies k = {', '.join(map(str, key_frequencies))} hold {final_share:.0%} of "
        f"its power, against {init_share:.0%} at initialisation ({TOP_K / len(power):.0%} for a flat spectrum)."
    )
    metrics = {
        **{k: v for k, v in s.items()}, "n_train": len(train_all.inputs), "n_test": len(test_all.inputs),
        "steps_run": steps[-1], "grokked": bool(generalised and memorised and generalised >= 1.5 * memorised),
        "step_train_99": memorised, "test_accuracy_at_train_99": test_at_memorised, "step_test_95": generalised,
        "final_train_accuracy": curves["train accuracy"][-1], "final_test_accuracy": curves["test accuracy"][-1],
        "fourier_top5_fraction": top_fraction(power), "fourier_top5_fraction_init": top_fraction(initial_power),
        "key_frequencies": key_frequencies, "curves": {"step": steps, **curves},
    }
    return ExperimentResult(finding, metrics, figures)


def _plot_spectrum(initial: torch.Tensor, final: torch.Tensor, p: int, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.4))
    ax = fig.subplots()
    k = torch.arange(1, len(final) + 1)
    ax.bar(k - 0.2, (initial / initial.sum()).numpy(), width=0.4, label="at initialisation", color="#bbbbbb")
    ax.bar(k + 0.2, (final / final.sum()).numpy(), width=0.4, label="after training", color="#c0392b")
    ax.set_xlabel(f"frequency k (waves of period p / k over the numbers 0..{p - 1})", fontsize=8)
    ax.set_ylabel("share of W_E's power", fontsize=8)
    ax.set_title("Fourier spectrum of the number embeddings", fontsize=9)
    ax.legend(fontsize=7)
    save(fig, path)
