"""``glassformer inspect DIR --input TEXT --html report.html``: look inside a saved model.

Opens the checkpoint and encodes the input as every command does (:mod:`glassformer.train.inputs`: a compiled
RASP program gets its start token, as ``sample`` gives it), runs it, writes the self-contained HTML report
(see :mod:`glassformer.lens.report`, with a compiled model's named residual dimensions) and prints what it found.
"""

from __future__ import annotations

import argparse

from glassformer.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` command to the ``glassformer`` command line."""
    p = subparsers.add_parser(
        "inspect",
        help="write an HTML report of what a saved model does on an input",
        description="Run a saved model on an input and write one self-contained HTML file (no network needed to "
        "view it) with its attention patterns, logit lens, direct logit attribution and head detector scores.",
    )
    p.add_argument("dir", help="checkpoint folder (or a training run's folder holding checkpoint/)")
    p.add_argument("--input", help="the input text, encoded with the checkpoint's tokenizer")
    p.add_argument("--tokens", help="comma-separated token ids instead of --input (for models without a tokenizer)")
    p.add_argument("--src", help="encoder-decoder only: the source text for the encoder")
    p.add_argument("--src-tokens", help="encoder-decoder only: comma-separated source token ids instead of --src")
    p.add_argument("--html", default="inspect.html", help="where to write the report (default: inspect.html)")
    p.add_argument("--answer", help="the token (text, or an id with --tokens) whose logit is attributed; "
                   "default: the model's top prediction at the last position")
    p.add_argument("--top-k", type=int, default=5, help="how many next-token predictions to list (default: 5)")
    p.add_argument("--fold", action="store_true",
                   help="analyse a copy with norm gains folded into the next weights (log-probabilities unchanged)")
    p.add_argument("--title", help="the report's title (default: the checkpoint folder's name)")
    p.add_argument("--device", default="cpu", help="device to run on: cpu, cuda, mps or auto (default: cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from glassformer.train.inputs import encode_input, open_model, residual_labels
    from glassformer.lens.folding import fold_weights
    from glassformer.lens.report import write_report
    from glassformer.model.norms import RESIDUAL_EQUATIONS, LayerNorm

    checkpoint = open_model(args.dir, device=args.device)
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    inputs: object = encode_input(checkpoint, args.input, args.tokens)  # as sample encodes it (a compiled program: BOS first)
    if model.encoder is not None:
        inputs = {"tokens": inputs, "src": encode_input(checkpoint, args.src, args.src_tokens, what="--src", ids_flag="--src-tokens", source=True)}
    elif args.src or args.src_tokens:
        raise InputError(f"--src is only for encoder-decoder models; this one is {model.config.arch!r}")
    answer = None
    if args.answer is not None:
        ids = [int(args.answer)] if args.tokens is not None else (tokenizer.encode(args.answer) if tokenizer else [])
        if len(ids) != 1:
            raise InputError(f"--answer must be exactly one token, {args.answer!r} encodes to {len(ids)}")
        answer = ids[0]
    if args.fold:
        pre_ln = RESIDUAL_EQUATIONS[model.blocks[0].residual][2] == "branch"  # the norm sits in the branch
        model = fold_weights(model, center_writing_weights=pre_ln and isinstance(model.ln_final, LayerNorm))
    title = args.title or f"glassformer inspect: {args.dir}"
    labels = residual_labels(checkpoint)
    path, summary = write_report(args.html, model, inputs, tokenizer=tokenizer, answer=answer, title=title, top_k=args.top_k,
                                 residual_labels=labels)
    print(f"wrote {path} ({summary['bytes'] / 1024:.0f} KB)")
    print("input ids: " + " ".join(map(str, (inputs["tokens"] if isinstance(inputs, dict) else inputs)[0].tolist())))
    print("prediction: " + ", ".join(f"{t!r} {p:.3f}" for t, p in summary["prediction"]))
    if labels is not None:
        print(f"residual stream: {len(labels)} named dimensions ({', '.join(labels[:6])}{', ...' if len(labels) > 6 else ''})")
    for name, (head, score) in summary.get("strongest_heads", {}).items():
        print(f"strongest {name.replace('_', ' ')} head: {head} ({'n/a' if score is None else f'{score:.3f}'})")
    if "attribution" in summary:
        top = ", ".join(f"{n} {v:+.2f}" for n, v in summary["attribution"]["top"][:3])
        print(f"direct logit attribution of {summary['attribution']['target']} = {summary['attribution']['total']:.3f}: {top}")
    return 0
