"""Command-line commands for training: ``demo``, ``train``, ``sample``, ``eval``, ``tasks``.

``glassformer/cli.py`` calls :func:`register` to add them to the ``glassformer`` command.
Distributed: ``torchrun --nproc_per_node N -m glassformer train ...`` (only rank 0 prints and writes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from glassformer.errors import CheckpointError, ConfigError, InputError
from glassformer.model import CHOICES, ModelConfig, Transformer
from glassformer.model.config import model_table
from glassformer.train import data_cli
from glassformer.train import distributed as D
from glassformer.train.checkpoint import load_checkpoint
from glassformer.train.data import TextTask
from glassformer.train.resume_flags import RESUMABLE, check_resume_flags
from glassformer.train.tasks import TASKS, get_task, list_tasks
from glassformer.train.trainer import TrainConfig, Trainer, evaluate, task_from_spec

# Defaults that differ between generated tasks and text. Text: nanoGPT's shakespeare-char CPU shape (4 layers,
# d_model 128, 4 heads, batch 12 x 64), with the variants and learning rate that reached the lowest validation
# loss in the classic recipe's training time (bench/results/core_text.md): RoPE, SwiGLU with d_mlp = 8/3 d_model
# (the parameters of a 4 d_model GELU MLP), LayerNorm without bias (on a CPU its fused kernel is ~3x faster than
# RMSNorm's), no biases, tied embeddings, lr 3e-3, 1,650 steps: val loss 1.58 against the classic recipe's 1.84,
# in the same training time (0.99x; the candidate "ln-1650" of that run).
TASK_DEFAULTS = dict(d_model=64, n_layers=2, n_heads=4, steps=2000, batch_size=64, lr=3e-3, warmup_steps=100,
                     eval_every=200, eval_batches=4, beta2=0.95)
TEXT_DEFAULTS = dict(d_model=128, n_layers=4, n_heads=4, steps=1650, batch_size=12, lr=3e-3, warmup_steps=100,
                     eval_every=250, eval_batches=20, beta2=0.99, block_size=64,
                     positional="rope", act="swiglu", norm="layernorm", bias=False, tie_embeddings=True)
TEXT_MODEL_DEFAULTS = ("positional", "act", "norm", "bias", "tie_embeddings")
DEMO = dict(task="reverse", length=8, d_model=64, n_layers=2, n_heads=4, steps=1500, batch_size=64, lr=3e-3,
            warmup_steps=50, eval_every=50, eval_batches=8, target=1.0, n_examples=6)
# Training flags left out fall back to a config file's [train] table, then to these (and TASK/TEXT_DEFAULTS).
TRAIN_FLAG_DEFAULTS = dict(min_lr=None, weight_decay=0.1, decay_embeddings=False, grad_clip=1.0, grad_accum=1,
                           save_every=None, stop_at_accuracy=None, log_every=10, seed=0, device="auto", dtype="auto",
                           compile=False)
MODEL_FLAGS = ("d_model", "n_layers", "n_heads", "d_head", "n_kv_heads", "d_mlp", "n_decoder_layers", "norm",
               "norm_position", "positional", "act", "attn_only", "tie_embeddings", "bias", "dropout")


def register(subparsers) -> None:
    """Add the training commands to the ``glassformer`` parser's subparsers."""
    _add_demo(subparsers)
    _add_train(subparsers)
    _add_sample(subparsers)
    _add_eval(subparsers)
    data_cli.register(subparsers)  # prepare, fill
    p = subparsers.add_parser("tasks", help="list the generated tasks", description="List the generated tasks, their architectures and options.")
    p.set_defaults(func=cmd_tasks)


# -- arguments ------------------------------------------------------------------------------------


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (flags override --config; vocabulary and context come from the task)")
    g.add_argument("--config", metavar="FILE", help="model config file (.json or .toml) with ModelConfig fields")
    g.add_argument("--arch", choices=CHOICES["arch"], help="architecture (default: decoder, or the task's first)")
    g.add_argument("--d-model", type=int, help="residual stream width (default: 64 for tasks, 128 for text)")
    g.add_argument("--n-layers", type=int, help="transformer blocks (default: 2 for tasks, 4 for text)")
    g.add_argument("--n-heads", type=int, help="attention heads per block (default: 4)")
    g.add_argument("--d-head", type=int, help="dimensions per head (default: d_model / n_heads)")
    g.add_argument("--n-kv-heads", type=int, help="key/value heads, fewer than n_heads for grouped-query attention")
    g.add_argument("--d-mlp", type=int, help="MLP hidden units (default: 4 * d_model)")
    g.add_argument("--n-decoder-layers", type=int, help="encoder-decoder: decoder blocks (default: n_layers)")
    g.add_argument("--norm", choices=CHOICES["norm"], help="normalisation (default: layernorm)")
    g.add_argument("--norm-position", choices=CHOICES["norm_position"], help="pre-LN or post-LN (default: pre)")
    g.add_argument("--positional", choices=CHOICES["positional"], help="positional scheme (default: learned for tasks, rope for text)")
    g.add_argument("--act", choices=CHOICES["act"], help="MLP activation (default: gelu for tasks, swiglu with d_mlp = 8/3 d_model for text)")
    g.add_argument("--attn-only", action="store_true", default=None, help="attention-only model (no MLPs)")
    g.add_argument("--tie-embeddings", action="store_true", default=None, help="tie W_U to W_E (default for text)")
    g.add_argument("--untie-embeddings", dest="tie_embeddings", action="store_false", help="a separate W_U (default for tasks)")
    g.add_argument("--no-bias", dest="bias", action="store_false", default=None, help="no bias terms (default for text)")
    g.add_argument("--bias", dest="bias", action="store_true", help="bias terms (default for tasks)")
    g.add_argument("--dropout", type=float, help="dropout probability (default: 0)")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, help="optimizer steps (default: 2000 for tasks, 1650 for text)")
    g.add_argument("--batch-size", type=int, help="global batch size in sequences (default: 64 for tasks, 12 for text)")
    g.add_argument("--lr", type=float, help="peak learning rate (default: 3e-3)")
    g.add_argument("--min-lr", type=float, help="final learning rate of the cosine decay (default: lr / 10)")
    g.add_argument("--warmup-steps", type=int, help="linear warm-up steps (default: 100)")
    g.add_argument("--weight-decay", type=float, help="AdamW weight decay on matrices (default: 0.1)")
    g.add_argument("--decay-embeddings", action="store_true", default=None, help="apply weight decay to embeddings too")
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm to this (0: off; default: 1)")
    g.add_argument("--grad-accum", type=int, help="micro-batches per step (gradient accumulation; default: 1)")
    g.add_argument("--eval-every", type=int, help="steps between evaluations (0: only at the end)")
    g.add_argument("--eval-batches", type=int, help="batches per evaluation")
    g.add_argument("--save-every", type=int, help="steps between checkpoints (default: eval-every; 0: only at the end)")
    g.add_argument("--stop-at-accuracy", type=float, help="stop once an evaluation reaches this sequence accuracy")
    g.add_argument("--log-every", type=int, help="steps between records in metrics.jsonl (default: 10)")
    g.add_argument("--seed", type=int, help="seed of the model's initialisation and the data stream (default: 0)")
    g.add_argument("--device", help="cuda, mps, cpu or auto (default: auto = the best available)")
    g.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), help="autocast dtype (default: auto = bfloat16 on CUDA)")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (optional, never required)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_demo(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="train a small transformer on a task in about a minute on CPU and show what it learned",
        description="Train a 2-layer transformer to reverse 8 letters (>= 99%% sequence accuracy in well under two "
        "minutes on 2 CPU cores), print examples, save an attention map and the checkpoint.",
    )
    p.add_argument("--task", default=DEMO["task"], choices=sorted(TASKS), help="task to learn (default: reverse)")
    p.add_argument("--steps", type=int, default=DEMO["steps"], help="at most this many steps (default: %(default)s)")
    p.add_argument("--out", default="runs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="auto", help="cuda, mps, cpu or auto (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


def _add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a model on a task or a text file",
        description="Train a transformer on a generated task (--task) or character-level on a text file (--text). "
        "Writes OUT/metrics.jsonl, OUT/summary.json and the checkpoint OUT/checkpoint. "
        "Multi-GPU / multi-node: torchrun --nproc_per_node N -m glassformer train ...",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--task", choices=sorted(TASKS), help="a generated task (see `glassformer tasks`)")
    what.add_argument("--text", metavar="FILE", help="a UTF-8 text file (or a folder from `glassformer prepare`) for language "
                      "modelling: next-token for a decoder, masked LM with --arch encoder")
    data_cli.add_data_sources(what)
    what.add_argument("--rasp", metavar="PROGRAM", help="a RASP program's outputs as the task: a library name or "
                      "FILE.py:NAME (options: --option vocab=abcd max_len=6 min_len=1)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="task option, e.g. --option length=12 (repeatable)")
    p.add_argument("--block-size", type=int, help="text: context length in characters (default: 64)")
    p.add_argument("--out", default="runs/train", help="output folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint (--steps may extend it)")
    data_cli.add_data_flags(p)
    _add_model_flags(p)
    _add_train_flags(p)
    p.set_defaults(func=cmd_train)


def _add_sample(subparsers) -> None:
    p = subparsers.add_parser("sample", help="generate from a checkpoint", description="Continue a prompt with a trained model.")
    p.add_argument("dir", metavar="DIR", help="checkpoint folder or training run folder")
    p.add_argument("--prompt", required=True, help="prompt text (for tasks, e.g. 'abcdefgh>'; encoder-decoder: the source; "
                   "a compiled RASP program: its input, whose outputs are printed)")
    p.add_argument("--max-new-tokens", type=int, help="tokens to generate (default: the task's answer length, 200 for text)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token (default for task checkpoints)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: 1.0)")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample from the smallest set of tokens with probability >= p")
    p.add_argument("--beam", type=int, metavar="N", help="beam search with N beams (encoder-decoder or decoder)")
    p.add_argument("--num-samples", type=int, default=1, help="how many continuations, sampled together as one batch (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole prefix every step (no KV cache)")
    p.add_argument("--device", default="cpu", help="device to run on (default: cpu)")
    p.set_defaults(func=cmd_sample)


def _add_eval(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint on fresh batches", description="Print loss and accuracies of a checkpoint on fresh batches of its task's held-out split.")
    p.add_argument("dir", metavar="DIR", help="checkpoint folder or training run folder")
    p.add_argument("--batches", type=int, default=16, help="batches to evaluate (default: 16)")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per batch (default: 64)")
    p.add_argument("--seed", type=int, default=2024, help="seed of the evaluation batches (default: 2024, unlike training's)")
    p.add_argument("--device", default="auto", help="device (default: auto)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_eval)


# -- building a run -------------------------------------------------------------------------------


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["length=12", "reverse_answer=true"]`` -> ``{"length": 12, "reverse_answer": True}`` (JSON values, else strings)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {item!r} must look like KEY=VALUE")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except ValueError:
            options[key.replace("-", "_")] = value
    return options


def model_config(args, task, arch: str) -> ModelConfig:
    """--config file, then the size flags, then the task's vocabulary, context and classes.

    The task decides the vocabulary and the classes: a config file that sets them differently is refused
    (naming both values) rather than silently overridden. A config file's ``n_ctx`` is kept when it is at
    least what the task needs."""
    fields: dict[str, Any] = dict(config_file(args)[0])
    defaults = TEXT_DEFAULTS if isinstance(task, TextTask) else TASK_DEFAULTS
    for name in ("d_model", "n_layers", "n_heads", *(TEXT_MODEL_DEFAULTS if defaults is TEXT_DEFAULTS else ())):
        fields.setdefault(name, defaults[name])
    for name in MODEL_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    if defaults is TEXT_DEFAULTS and fields["act"] in ("swiglu", "geglu") and "d_mlp" not in fields:
        fields["d_mlp"] = math.ceil(8 / 3 * fields["d_model"] / 8) * 8  # a gated MLP as big as a 4 d_model plain one
    task_fields = data_cli.model_fields(task, arch)  # vocabulary, context, classes (or a vision task's image shape)
    needed = {"d_vocab": task_fields["d_vocab"], "n_classes": task_fields.get("n_classes", 0)}
    for name, value in needed.items():
        if name in fields and fields[name] != value:
            raise ConfigError(f"{args.config} sets {name} = {fields[name]!r}, but the task {task.name!r} needs "
                              f"{name} = {value} (the task decides it: leave it out of the file)")
    n_ctx = task_fields["n_ctx"]
    if fields.get("n_ctx", n_ctx) < n_ctx:
        raise ConfigError(f"{args.config} sets n_ctx = {fields['n_ctx']!r}, but {task.name!r} sequences need "
                          f"n_ctx >= {n_ctx} (leave it out of the file, or make it larger)")
    fields.update({**task_fields, "n_ctx": max(fields.get("n_ctx", n_ctx), n_ctx)})
    return ModelConfig.from_dict(fields)


def config_file(args) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model fields, train fields) of ``--config`` (empty without one). The model fields are the file's
    top level or its ``[model]`` table; a ``[train]`` table holds TrainConfig fields, which flags override."""
    if not getattr(args, "config", None):
        return {}, {}
    path = Path(args.config)
    ModelConfig.load(path)  # validates, with errors that name the file and the field
    text = path.read_text()
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        data = tomllib.loads(text)
    else:
        data = json.loads(text)
    train = data.get("train", {}) if "model" in data else {}
    unknown = sorted(set(data) - {"model", "train"}) if "model" in data else []
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)}; a config file holds [model] and [train]")
    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"out_dir", "quiet"}
    bad = sorted(set(train) - known)
    if bad:
        raise ConfigError(f"{path}: unknown [train] field(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    return model_table(data, path), dict(train)


def file_arch(args, task) -> str:
    """--arch, else the config file's arch, else the task's first (decoder where it can)."""
    arch = args.arch or config_file(args)[0].get("arch") or ("decoder" if "decoder" in task.archs else task.archs[0])
    if arch not in task.archs:
        raise ConfigError(f"task {task.name!r} supports arch {', '.join(task.archs)}, not {arch!r}")
    return arch


def train_config(args, task, out: str) -> TrainConfig:
    """Flags, then the config file's [train] table, then the defaults for tasks or text."""
    defaults = {**(TEXT_DEFAULTS if isinstance(task, TextTask) else TASK_DEFAULTS), **config_file(args)[1]}

    def pick(name):
        value = getattr(args, name, None)
        return value if value is not None else defaults.get(name, TRAIN_FLAG_DEFAULTS.get(name))

    return TrainConfig(
        steps=pick("steps"), batch_size=pick("batch_size"), lr=pick("lr"), min_lr=pick("min_lr"),
        warmup_steps=pick("warmup_steps"), weight_decay=pick("weight_decay"), decay_embeddings=pick("decay_embeddings"),
        beta2=defaults["beta2"], grad_clip=pick("grad_clip"), grad_accum=pick("grad_accum"), eval_every=pick("eval_every"),
        eval_batches=pick("eval_batches"), save_every=pick("save_every"), stop_at_accuracy=pick("stop_at_accuracy"),
        log_every=pick("log_every"), seed=pick("seed"), device=pick("device"), dtype=pick("dtype"), compile=pick("compile"),
        out_dir=out, quiet=args.quiet,
    )


def make_task(args, arch: str | None = None):
    task = data_cli.make_data_task(args, arch, parse_options(args.option))  # --text, --pairs, --labels, --images
    if task is not None:
        return task
    if getattr(args, "rasp", None):
        from glassformer.rasp.task import task as rasp_task

        return rasp_task(args.rasp, **parse_options(args.option))
    if not args.task:
        raise ConfigError("say what to train on: --task NAME (see `glassformer tasks`), --text, --pairs, --labels, "
                          "--images or --rasp PROGRAM")
    return get_task(args.task, **parse_options(args.option))


def _say(*lines: str) -> None:
    if D.dist_info_from_env().is_main:
        print(*lines, sep="\n", flush=True)


def _describe(model: Transformer, task) -> str:
    c = model.config
    what = f"{task.name!r} ({', '.join(f'{k}={v}' for k, v in task.options.items() if k not in ('seed', 'path', 'split'))})"
    return f"{c.n_layers}-layer {c.arch} (d_model {c.d_model}, {c.n_heads} heads, {model.num_params():,} parameters) on {what}"


def _metrics_line(metrics: dict, text: bool) -> str:
    """Loss and accuracies (for text, whole-window accuracy means nothing: left out)."""
    line = f"loss {metrics['loss']:.4f}, token accuracy {metrics['token_accuracy']:.2%}"
    return line if text else line + f", sequence accuracy {metrics['sequence_accuracy']:.2%}"


def _report(summary: dict, out: Path, text: bool) -> None:
    _say(
        f"done: {summary['steps']} steps in {summary['seconds']:.1f} s ({summary['tokens_per_second']:,.0f} tokens/s); "
        f"eval {_metrics_line(summary, text)}",
        f"checkpoint: {out / 'checkpoint'}",
        f"metrics:    {out / 'metrics.jsonl'}, {out / 'summary.json'}",
    )


# -- commands -------------------------------------------------------------------------------------


def cmd_train(args) -> int:
    out = Path(args.out)
    try:
        if args.resume:
            overrides = {k: getattr(args, k) for k in RESUMABLE if getattr(args, k) not in (None, False)}
            trainer = Trainer.from_checkpoint(out, **overrides)
            check_resume_flags(args, trainer, MODEL_FLAGS)
            _say(f"resuming {out} at step {trainer.step} of {trainer.config.steps}")
        else:
            task = make_task(args, args.arch or config_file(args)[0].get("arch"))
            arch = file_arch(args, task)
            torch.manual_seed(args.seed if args.seed is not None else TRAIN_FLAG_DEFAULTS["seed"])
            model = data_cli.init_model(args, task, arch) if args.init else Transformer(model_config(args, task, arch))
            trainer = Trainer(model, task, train_config(args, task, str(out)))
            _say(f"training a {_describe(model, task)} on {trainer.device} for {trainer.config.steps} steps")
        summary = trainer.train()
        summary = data_cli.after_training(trainer, summary, out)
        _report(summary, out, text=trainer.spec["name"] == TextTask.name)
    finally:
        D.cleanup()
    return 0


def cmd_demo(args) -> int:
    from glassformer.viz.attention import plot_attention

    out = Path(args.out)
    task = get_task(args.task, **({"length": DEMO["length"]} if args.task in ("reverse", "copy", "sort") else {}))
    arch = "decoder"
    torch.manual_seed(args.seed)
    model = Transformer(ModelConfig(arch=arch, d_model=DEMO["d_model"], n_layers=DEMO["n_layers"], n_heads=DEMO["n_heads"],
                                    d_vocab=task.tokenizer.vocab_size, n_ctx=task.n_ctx(arch)))
    config = TrainConfig(steps=args.steps, batch_size=DEMO["batch_size"], lr=DEMO["lr"], warmup_steps=DEMO["warmup_steps"],
                         eval_every=DEMO["eval_every"], eval_batches=DEMO["eval_batches"], stop_at_accuracy=DEMO["target"],
                         seed=args.seed, device=args.device, out_dir=str(out), quiet=args.quiet)
    trainer = Trainer(model, task, config)
    _say(f"glassformer demo: training a {_describe(model, task)} on {trainer.device}")
    summary = trainer.train()
    _say(
        f"trained {summary['steps']} steps in {summary['seconds']:.1f} s: sequence accuracy {summary['sequence_accuracy']:.1%}, "
        f"token accuracy {summary['token_accuracy']:.1%} on {config.eval_batches * config.eval_batch_size} fresh examples",
        "", "what it learned (prompt -> model output):",
    )
    generator = torch.Generator().manual_seed(args.seed + 7)
    model.eval()
    for _ in range(DEMO["n_examples"]):
        prompt, answer = task.example(generator)
        output = _complete(model, task.tokenizer, prompt, len(answer))
        mark = "correct" if output == answer else f"wrong (expected {answer})"
        _say(f"  {prompt} -> {output}   {mark}")
    prompt, answer = task.example(generator)
    tokens = torch.tensor([task.tokenizer.encode(prompt + answer)[:-1]], device=trainer.device)  # [1, pos]
    _, cache = model.run_with_cache(tokens, names=lambda name: name.endswith("attn.pattern"))
    patterns = torch.stack([cache[f"blocks.{l}.attn.pattern"][0] for l in range(model.config.n_layers)])  # [layers, heads, q, k]
    labels = list(prompt + answer)[:-1]
    picture = out / "attention.png"
    plot_attention(patterns, labels, title=f"{task.name}: attention on {prompt}{answer}", path=picture)
    _say(
        "",
        f"attention map: {picture}   (rows = query positions, columns = the keys they attend to)",
        f"checkpoint:    {out / 'checkpoint'}   (try: glassformer sample {out} --prompt {prompt!r})",
        f"metrics:       {out / 'metrics.jsonl'}, {out / 'summary.json'}",
    )
    if summary["sequence_accuracy"] < 0.99:
        _say(f"the demo did not reach 99% sequence accuracy in {summary['steps']} steps (try --steps or another --seed)")
        return 1
    return 0


def _complete(model: Transformer, tokenizer, prompt: str, n_new: int) -> str:
    tokens = torch.tensor([tokenizer.encode(prompt)], device=next(model.parameters()).device)  # [1, pos]
    out = model.generate(tokens, n_new, greedy=True)  # [1, pos + n_new]
    return tokenizer.decode(out[0, tokens.shape[1]:])


def cmd_sample(args) -> int:
    from glassformer.train.inputs import encode_input, seq2seq_prompt

    if args.num_samples < 1:
        raise InputError(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.beam is not None and args.beam < 1:
        raise InputError(f"--beam must be >= 1 (the number of beams), got {args.beam}")
    if args.max_new_tokens is not None and args.max_new_tokens < 0:
        raise InputError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    checkpoint = load_checkpoint(args.dir, device=args.device)
    if "rasp" in checkpoint.extra:
        return _run_compiled_program(args)
    model, tokenizer, config = checkpoint.model, checkpoint.tokenizer, checkpoint.config
    if tokenizer is None:
        raise InputError(f"{checkpoint.path} has no tokenizer, so text prompts cannot be encoded")
    task = _task_or_none(checkpoint)
    device = next(model.parameters()).device
    ids = encode_input(checkpoint, args.prompt, what="--prompt")  # [1, pos], as inspect and explain encode it
    _check_prompt_fits(len(tokenizer.encode(args.prompt)), config, task)  # the prompt itself (a class token is added)
    if config.arch == "encoder":
        return _classify(model, task, ids, args.prompt)
    answer_len = getattr(task, "answer_len", None)
    n_new = args.max_new_tokens if args.max_new_tokens is not None else (answer_len or 200)
    greedy = args.greedy or (task is not None and not isinstance(task, TextTask) and args.temperature is None and args.top_k is None and args.top_p is None)
    src = None
    stops = getattr(task, "stop_tokens", None)  # a pairs model ends its answer with [EOS]
    if config.arch == "encoder-decoder":  # the prompt is the source; the decoder starts from the start token
        src, start, stops = seq2seq_prompt(checkpoint, task, args.prompt, stops)
        ids = torch.tensor([start], device=device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    if args.beam:  # deterministic: one search answers every sample
        out = model.beam_search(src, tokens=ids, max_new_tokens=n_new, beam_size=args.beam, use_cache=not args.no_cache, stop_tokens=stops)
        out = out.expand(args.num_samples, -1)
    else:  # every sample in one batch: the prompt repeated once per row
        rows = args.num_samples
        out = model.generate(ids.expand(rows, -1), n_new, src=None if src is None else src.expand(rows, -1), greedy=greedy,
                             temperature=args.temperature or 1.0, top_k=args.top_k, top_p=args.top_p,
                             use_cache=not args.no_cache, generator=generator, stop_tokens=stops)
    for row in out:
        row = row[ids.shape[1]:].tolist()
        completion = tokenizer.decode(row[: row.index(stops[0])] if stops and stops[0] in row else row)
        arrow = src is not None or (task is not None and not isinstance(task, TextTask))  # an answer, not a continuation
        print(f"{args.prompt} -> {completion}" if arrow else args.prompt + completion)
    return 0


def _check_prompt_fits(n_tokens: int, config: ModelConfig, task) -> None:
    """A task's prompt (or an encoder's input) longer than the context is refused, as ``inspect`` refuses it:
    cropping it would answer a different question. Text is continued from its last n_ctx characters (a
    sliding window), as every language model does."""
    if task is not None and isinstance(task, TextTask) and config.arch == "decoder":
        return
    room = config.n_ctx - (1 if config.arch == "encoder" else 0)  # an encoder's classifier token takes one
    if n_tokens > room:
        raise InputError(f"the prompt is {n_tokens} tokens long, but this model reads at most {room} "
                         f"(n_ctx = {config.n_ctx}): shorten it")


def _run_compiled_program(args) -> int:
    """A compiled RASP program (``glassformer rasp compile``) maps its input to one output per position:
    nothing is sampled, the prompt is the input and the model's decoded outputs are printed."""
    from glassformer.rasp.cli import parse_input, show_values
    from glassformer.rasp.compiler.compiled import CompiledModel

    compiled = CompiledModel.load(args.dir, device=args.device)
    xs = parse_input(args.prompt, None, compiled.vocab)
    if not xs:
        raise InputError("--prompt is empty: a compiled program needs at least one input element")
    print(f"{show_values(xs)} -> {show_values(compiled.run(xs))}")
    return 0


def _classify(model: Transformer, task, ids: torch.Tensor, prompt: str) -> int:
    if model.config.n_classes == 0:
        raise InputError("this encoder has no classification head (n_classes = 0): nothing to sample")
    with torch.no_grad():  # ids carry the class token at position 0 (encode_input puts it there)
        probs = torch.softmax(model.classify(ids)[0].float(), dim=-1)  # [n_classes]
    names = getattr(task, "class_chars", None) or [str(i) for i in range(len(probs))]
    for i in probs.argsort(descending=True).tolist():
        print(f"class {names[i]}: {probs[i]:.3f}")
    return 0


def _task_or_none(checkpoint):
    if checkpoint.task is None:
        return None
    try:
        return task_from_spec(checkpoint.task, tokenizer=checkpoint.tokenizer)
    except (InputError, ConfigError, CheckpointError) as e:
        print(f"glassformer: note: the checkpoint's task could not be rebuilt ({e})", file=sys.stderr)
        return None


def cmd_eval(args) -> int:
    for flag in ("batches", "batch_size"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    checkpoint = load_checkpoint(args.dir, device=args.device)
    if checkpoint.task is None:
        raise InputError(f"{checkpoint.path} records no task, so there is nothing to evaluate it on")
    task = task_from_spec(checkpoint.task, tokenizer=checkpoint.tokenizer)
    held_out = task.with_split("val") if hasattr(task, "with_split") else task
    metrics = evaluate(checkpoint.model, held_out, n_batches=args.batches, batch_size=args.batch_size, seed=args.seed)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{checkpoint.path}: {checkpoint.task['name']} on {args.batches} x {args.batch_size} fresh examples (seed {args.seed})")
        print(_metrics_line(metrics, text=checkpoint.task["name"] == TextTask.name))
    return 0


def cmd_tasks(args) -> int:
    rows = [(name, ", ".join(TASKS[name].archs), description) for name, description in list_tasks()]
    rows.append((TextTask.name, "decoder, encoder", TextTask.description + " (glassformer train --text FILE; masked LM with --arch encoder)"))
    rows += [("pairs", "encoder-decoder", "source/target pairs from a TSV or JSONL file (glassformer train --pairs FILE)"),
             ("labels", "encoder", "text classification from a TSV, CSV or JSONL file (glassformer train --labels FILE)"),
             ("digits", "encoder", "scikit-learn's 8x8 digits for a vision transformer (glassformer train --images digits)"),
             ("images", "encoder", "an image folder, one sub-folder per class (glassformer train --images DIR)")]
    width = max(len(r[0]) for r in rows)
    arch_width = max(len(r[1]) for r in rows)
    for name, archs, description in rows:
        print(f"{name:<{width}}  {archs:<{arch_width}}  {description}")
    return 0
