"""Command-line commands of the Explain subsystem:

    glassformer explain DIR|CONFIG --input ... [--out FILE.md|FILE.html]    a forward pass, equation by equation
    glassformer diagram DIR|CONFIG [--expanded] [--out FILE.svg]            the architecture as an SVG
    glassformer experiment NAME [--out DIR] [--quick|--full] [--seed N]     answer a question by experiment
    glassformer experiment --list                                           the questions that can be asked

``DIR`` is a checkpoint folder (or a training run's folder); ``CONFIG`` a ``.json``/``.toml`` model config,
built with random weights (``--seed``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from glassformer.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``explain``, ``diagram`` and ``experiment`` to the ``glassformer`` command line."""
    p = subparsers.add_parser(
        "explain",
        help="write one forward pass as a document, equation by equation, with the model's numbers",
        description="Run one input through a model and write every step (embedding, each head's queries, keys, "
        "scores, softmax and values, the residual additions, the MLP, the unembedding) with its equation, the shapes "
        "of its operands and the actual numbers. Use a tiny config (e.g. d_model = 4) to see every number.",
    )
    p.add_argument("model", metavar="DIR|CONFIG", help="checkpoint folder, or a model config file (.json/.toml)")
    p.add_argument("--input", required=True, help="the input, encoded as sample and inspect encode it: text for a "
                   "checkpoint with a tokenizer (a compiled RASP program's elements, its start token added), otherwise "
                   "token ids separated by commas or spaces (e.g. '3,1,4'); for a vision model, a .npy image file")
    p.add_argument("--src", help="encoder-decoder only: the source (encoder input), as text or token ids like --input")
    p.add_argument("--out", help="output file: .md (Markdown) or .html (self-contained); default: Markdown on stdout")
    p.add_argument("--max-rows", type=int, default=8, help="show at most this many rows of a tensor (default: 8)")
    p.add_argument("--max-cols", type=int, default=8, help="show at most this many columns of a tensor (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights when given a CONFIG (default: 0)")
    p.set_defaults(func=cmd_explain)

    p = subparsers.add_parser(
        "diagram",
        help="draw a model's architecture as an SVG",
        description="Draw the architecture of a checkpoint or config: embeddings, positional scheme, each block with "
        "its norms where the config puts them (Pre-LN vs Post-LN), residual paths, cross-attention, the unembedding, "
        "with tensor shapes on the arrows.",
    )
    p.add_argument("model", metavar="DIR|CONFIG", help="checkpoint folder, or a model config file (.json/.toml)")
    p.add_argument("--expanded", action="store_true", help="draw every block and every head (default: one block, '× N')")
    p.add_argument("--out", default="model.svg", help="where to write the SVG (default: model.svg)")
    p.set_defaults(func=cmd_diagram)

    if "experiment" not in subparsers.choices:  # another subsystem may already offer it
        p = subparsers.add_parser(
            "experiment",
            help="answer a question about transformers by running an experiment",
            description="Run one of the experiments (each under a minute on a laptop CPU); it writes its figures, "
            "finding.md and metrics.json into --out and prints the finding.",
        )
        p.add_argument("name", nargs="?", help="the experiment to run (see --list)")
        p.add_argument("--list", action="store_true", help="list the experiments and the question each answers")
        p.add_argument("--out", help="output folder (default: experiments/NAME)")
        p.add_argument("--quick", action="store_true", help="the reduced version the tests run (seconds, same finding)")
        p.add_argument("--full", action="store_true", help="the longer version (more steps or seeds), where there is one")
        p.add_argument("--seed", type=int, default=0, help="random seed; results are reproducible from it (default: 0)")
        p.set_defaults(func=cmd_experiment)


# -- loading ----------------------------------------------------------------------------------------------


def load_model(path: str, seed: int = 0):
    """``(model, tokenizer)`` from a checkpoint folder, or ``(random model, None)`` from a config file."""
    from glassformer.train.inputs import open_model

    checkpoint = open_model(path, seed=seed)
    return checkpoint.model, checkpoint.tokenizer


def read_image(path: str, model):
    """A vision model's input: one image from a ``.npy`` file, [channels, H, W] (or [H, W] with one channel)."""
    import numpy as np

    p = Path(path)
    if p.suffix.lower() != ".npy" or not p.is_file():
        raise InputError(f"a vision model (input='patches') reads an image: give --input a .npy file of shape "
                         f"[{model.config.n_channels}, {model.config.image_size}, {model.config.image_size}], got {path!r}")
    try:
        image = np.load(p, allow_pickle=False)
    except ValueError as e:
        raise InputError(f"{path} is not a NumPy array file: {e}") from None
    return torch.as_tensor(np.asarray(image, dtype=np.float32))


# -- commands ---------------------------------------------------------------------------------------------


def cmd_explain(args: argparse.Namespace) -> int:
    from glassformer.explain.trace import trace
    from glassformer.train.inputs import encode_input, open_model, residual_labels

    checkpoint = open_model(args.model, seed=args.seed)
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    if hasattr(model.embed, "check_images"):  # a vision model
        inputs = read_image(args.input, model)
    else:  # encoded as every command encodes it (a compiled program: BOS first)
        inputs = encode_input(checkpoint, args.input)[0].tolist()
    src = encode_input(checkpoint, args.src, what="--src", source=True)[0].tolist() if args.src is not None else None
    doc = trace(model, inputs, src=src, tokenizer=tokenizer, max_rows=args.max_rows, max_cols=args.max_cols,
                residual_labels=residual_labels(checkpoint))
    if args.out:
        path = doc.save(args.out)
        print(f"wrote {path} ({sum(len(s.steps) for s in doc.sections)} steps)")
    else:
        sys.stdout.write(doc.to_markdown())
    return 0


def cmd_diagram(args: argparse.Namespace) -> int:
    from glassformer.explain.diagram import save_diagram
    from glassformer.train.inputs import open_model, residual_labels

    out = Path(args.out)
    if out.suffix.lower() != ".svg":
        raise InputError(f"--out must name an .svg file, got {args.out}")
    checkpoint = open_model(args.model)
    save_diagram(checkpoint.model, out, expanded=args.expanded, residual_labels=residual_labels(checkpoint))
    print(f"wrote {out}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from glassformer.explain.experiments import registry, run_experiment

    experiments = registry()
    if args.list:
        width = max(map(len, experiments), default=0)
        for name, module in experiments.items():
            print(f"{name:<{width}}  {module.DESCRIPTION}")
        return 0
    if not args.name:
        raise InputError(f"name an experiment (or --list); available: {', '.join(experiments)}")
    out = Path(args.out) if args.out else Path("experiments") / args.name
    result = run_experiment(args.name, out, quick=args.quick, seed=args.seed, full=args.full)
    print(result.finding)
    print(f"\nwrote {out}/: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0
