"""Text quality: glassformer's default character-level recipe on tiny Shakespeare vs nanoGPT's CPU run.

The reference people know is nanoGPT's README CPU run on shakespeare_char:

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0          -> "a loss of 1.88" (val)

Two recipes train side by side, one step of each in turn (so both see the same machine noise):

* ``glassformer-default``: exactly what ``glassformer train --text tiny.txt`` does (the CLI's own
  parser and builders make the task, the model and the TrainConfig).
* ``nanogpt-recipe``: nanoGPT's settings in glassformer: no biases, tied embeddings, exact GELU,
  weight decay on embeddings too, lr 1e-3 -> 1e-4 cosine over the run, 100 warm-up steps, beta2 0.99,
  clip 1.0, batch 12 x 64. An in-run control for the data and the evaluation.

Both are evaluated every ``eval_every`` steps on the same 20 validation batches of 12 x 64 characters
(nanoGPT's ``eval_iters=20`` estimate), and at the end on 200 batches. Recorded: validation loss against
steps and against training seconds (evaluation time excluded), as JSON and a PNG.

    python bench/bench_text.py            # 2000 steps each (about 10 minutes on 2 quiet cores)
    python bench/bench_text.py --quick    # 300 steps
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHAKESPEARE_DIR, machine_info, markdown_table, write_results
from glassformer import ModelConfig, Transformer
from glassformer.train import TextTask, TrainConfig, Trainer

NANOGPT_README = {"steps": 2000, "val_loss": 1.88, "source": "karpathy/nanoGPT README, 'baby GPT' CPU run"}
EVAL_BATCH, EVAL_BLOCK = 12, 64


SMOKE_SIZE = {"d_model": 32, "n_layers": 1, "block_size": 32, "warmup_steps": 2}  # --smoke: same code path, tiny model


def default_recipe(text: Path, steps: int | None, tiny: bool = False, flags: tuple[str, ...] = ()) -> tuple[Transformer, TextTask, TrainConfig]:
    """What ``glassformer train --text FILE [--steps N] [flags]`` builds, through the CLI's own code."""
    from glassformer.cli import build_parser
    from glassformer.train.cli import make_task, model_config, train_config

    argv = ["train", "--text", str(text), "--quiet", "--device", "cpu", *flags] + (["--steps", str(steps)] if steps else [])
    if tiny:
        argv += [f"--{k.replace('_', '-')}={v}" for k, v in SMOKE_SIZE.items()]
    args = build_parser().parse_args(argv)
    task = make_task(args)
    torch.manual_seed(args.seed if args.seed is not None else 0)  # the CLI's default seed
    model = Transformer(model_config(args, task, "decoder"))
    return model, task, train_config(args, task, None)


def nanogpt_recipe(text: Path, steps: int | None, tiny: bool = False) -> tuple[Transformer, TextTask, TrainConfig]:
    """nanoGPT's README CPU run, in glassformer."""
    size = SMOKE_SIZE if tiny else {"d_model": 128, "n_layers": 4, "block_size": 64}
    task = TextTask(text, block_size=size["block_size"])
    torch.manual_seed(0)
    model = Transformer(ModelConfig(
        d_model=size["d_model"], n_layers=size["n_layers"], n_heads=4, d_vocab=task.d_vocab, n_ctx=size["block_size"],
        act="gelu", bias=False, tie_embeddings=True, dropout=0.0,
    ))
    config = TrainConfig(
        steps=steps or 2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=2 if tiny else 100, weight_decay=0.1,
        decay_embeddings=True, beta1=0.9, beta2=0.99, grad_clip=1.0, eval_every=0, seed=0, device="cpu", quiet=True,
    )
    return model, task, config


RECIPES = {"glassformer-default": default_recipe, "nanogpt-recipe": nanogpt_recipe}


def add_candidates(specs: list[str]) -> list[str]:
    """``--candidate NAME='--flag value ...'``: a recipe = the CLI's ``train --text`` with those flags (for
    finding a better default; each trains beside the others, one step each in turn)."""
    names = []
    for spec in specs:
        name, _, flags = spec.partition("=")
        RECIPES[name] = lambda text, steps, tiny=False, _flags=tuple(flags.split()): default_recipe(text, steps, tiny, _flags)
        names.append(name)
    return names


@torch.no_grad()
def val_loss(model: Transformer, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean next-character cross-entropy over fixed validation batches."""
    was = model.training
    model.eval()
    total = 0.0
    for inputs, targets in batches:
        logits = model(inputs)  # [batch, block, d_vocab]
        total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).item()
    model.train(was)
    return total / len(batches)


def val_batches(task: TextTask, n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    val = task.with_split("val")
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        b = val.batch(EVAL_BATCH, generator=g)
        out.append((b.inputs[:, :EVAL_BLOCK], b.targets[:, :EVAL_BLOCK]))  # [12, <= 64] each
    return out


def run(text: Path, recipes: list[str], steps: int | None, eval_every: int, eval_batches: int, final_batches: int,
        tiny: bool = False) -> dict:
    trainers, curves, seconds = {}, {}, {}
    probe_task = None
    for name in recipes:
        model, task, config = RECIPES[name](text, steps, tiny)
        trainers[name] = Trainer(model, task, config)
        curves[name] = []
        seconds[name] = 0.0
        probe_task = probe_task or task
    n_steps = max(t.config.steps for t in trainers.values())  # recipes may differ in steps (time-matched ones)
    fixed = val_batches(probe_task, eval_batches, seed=1234)
    train_losses = {name: [] for name in recipes}

    def evaluate(step: int) -> None:
        for name, trainer in trainers.items():
            if curves[name] and curves[name][-1]["step"] == trainer.step:
                continue  # finished earlier (fewer steps): nothing new
            curves[name].append({
                "step": trainer.step, "seconds": seconds[name], "val_loss": val_loss(trainer.model, fixed),
                "train_loss": sum(train_losses[name][-eval_every:]) / max(1, len(train_losses[name][-eval_every:])) if step else None,
            })

    evaluate(0)
    for step in range(1, n_steps + 1):
        for name, trainer in trainers.items():
            if trainer.step >= trainer.config.steps:
                continue
            t0 = time.perf_counter()
            train_losses[name].append(trainer.train_step())
            seconds[name] += time.perf_counter() - t0
        if step % eval_every == 0 or step == n_steps or any(t.step == step == t.config.steps for t in trainers.values()):
            evaluate(step)
            print(f"step {step}: " + ", ".join(f"{n} val {curves[n][-1]['val_loss']:.3f} ({seconds[n]:.0f} s)" for n in recipes), flush=True)
    final = val_batches(probe_task, final_batches, seed=4321)
    results = {}
    for name, trainer in trainers.items():
        c = trainer.model.config
        results[name] = {
            "model": {"d_model": c.d_model, "n_layers": c.n_layers, "n_heads": c.n_heads, "n_ctx": c.n_ctx, "bias": c.bias,
                      "tie_embeddings": c.tie_embeddings, "act": c.act, "params": trainer.model.num_params()},
            "train_config": {k: v for k, v in trainer.config.to_dict().items() if k not in ("out_dir", "quiet", "device")},
            "curve": curves[name],
            "final_val_loss": curves[name][-1]["val_loss"],
            "final_val_loss_precise": val_loss(trainer.model, final),
            "train_seconds": seconds[name],
            "tokens_per_second": trainer.tokens_seen / seconds[name],
        }
    return results


def plot(results: dict, path: Path, reference: dict | None, threads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, r in results.items():
        steps = [p["step"] for p in r["curve"]]
        secs = [p["seconds"] for p in r["curve"]]
        losses = [p["val_loss"] for p in r["curve"]]
        axes[0].plot(steps, losses, marker=".", label=name)
        axes[1].plot(secs, losses, marker=".", label=name)
    if reference is not None:
        axes[0].scatter([reference["steps"]], [reference["val_loss"]], color="k", marker="*", s=120, zorder=5,
                        label=f"nanoGPT README ({reference['val_loss']} at {reference['steps']} steps)")
        for ax in axes:
            ax.axhline(reference["val_loss"], color="k", lw=0.7, ls="--")
    axes[0].set_xlabel("optimizer step")
    axes[1].set_xlabel(f"training seconds ({threads} torch thread{'s' if threads > 1 else ''}, evaluation excluded)")
    for ax in axes:
        ax.set_ylabel("validation loss (nats / character)")
        ax.set_ylim(1.4, 4.4)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Character-level tiny Shakespeare: validation loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_markdown(results: dict, meta: dict) -> str:
    rows = [[name, r["model"]["params"], r["train_config"]["steps"], f"{r['final_val_loss']:.3f}",
             f"{r['final_val_loss_precise']:.3f}", f"{r['train_seconds']:.0f}", f"{r['tokens_per_second']:,.0f}"]
            for name, r in results.items()]
    ref = NANOGPT_README
    rows.append(["nanoGPT README (reference)", "~0.8M", ref["steps"], f"{ref['val_loss']:.2f}", "-", "~180 (their CPU)", "-"])
    return "\n".join([
        "# Text quality: character-level tiny Shakespeare",
        "",
        f"Data: {meta['text']}; machine {meta['machine']['cpu']} ({meta['machine']['torch_threads']} threads), load "
        f"average {meta['machine']['load_average_1m']:.1f} at start. The recipes trained in turn, one step each.",
        "",
        markdown_table(["recipe", "params", "steps", f"val loss ({meta['eval_batches']} batches)",
                        f"val loss ({meta['final_batches']} batches)", "train seconds", "tokens/s"], rows),
        "",
        "![validation loss against steps and seconds](core_text.png)",
    ])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 steps per recipe")
    parser.add_argument("--smoke", action="store_true", help="8 steps of a tiny model, tiny evaluation (for tests)")
    parser.add_argument("--steps", type=int, default=None, help="steps per recipe (default: the recipe's, 2000)")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated subset of {list(RECIPES)}")
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME='FLAGS'",
                        help="also train `glassformer train --text` with these flags, e.g. rope='--positional rope' (repeatable)")
    parser.add_argument("--text", type=Path, default=SHAKESPEARE_DIR / "tiny.txt", help="the corpus (default: shared tiny.txt)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where to write core_text.{json,md,png}")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.text.is_file():
        print(f"skipped: no corpus at {args.text} (the shared data folder sits beside the repository)")
        return {"skipped": f"missing {args.text}"}
    steps = 8 if args.smoke else 300 if args.quick else args.steps
    eval_every = 4 if args.smoke else 50 if args.quick else 100
    eval_batches, final_batches = (2, 2) if args.smoke else (20, 200)
    meta = {"text": str(args.text.resolve()), "machine": machine_info(), "eval_batches": eval_batches, "final_batches": final_batches}
    started = time.perf_counter()
    recipes = args.recipes.split(",") + add_candidates(args.candidate)
    results = run(args.text, recipes, steps, eval_every, eval_batches, final_batches, tiny=args.smoke)
    meta["wall_seconds"] = time.perf_counter() - started
    meta["machine"]["load_average_1m_end"] = machine_info()["load_average_1m"]
    data = {"meta": meta, "reference": NANOGPT_README, "recipes": results}
    path = write_results("text", data, to_markdown(results, meta), args.results_dir)
    full_length = all(r["train_config"]["steps"] == NANOGPT_README["steps"] for r in results.values())
    plot(results, path.with_suffix(".png"), NANOGPT_README if full_length else None, meta["machine"]["torch_threads"])
    for name, r in results.items():
        verdict = ""
        if full_length:
            verdict = " (matches or beats nanoGPT's 1.88)" if r["final_val_loss_precise"] <= NANOGPT_README["val_loss"] + 0.02 else " (worse than nanoGPT's 1.88)"
        print(f"{name}: val loss {r['final_val_loss_precise']:.3f} after {r['train_config']['steps']} steps, "
              f"{r['train_seconds']:.0f} s{verdict}")
    print(f"wrote {path} and {path.with_suffix('.png').name} in {meta['wall_seconds']:.0f} s")
    return data


if __name__ == "__main__":
    main()
