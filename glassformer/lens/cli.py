"""``glassformer inspect DIR --input TEXT --html report.html``: look inside a saved model.

Loads the checkpoint with :func:`glassformer.load`, runs the input, writes the self-contained HTML
report (see :mod:`glassformer.lens.report`) and prints what it found.
"""

from __future__ import annotations

import argparse

import torch

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
    from glassformer import load
    from glassformer.lens.folding import fold_weights
    from glassformer.lens.report import write_report

    model, tokenizer = load(args.dir, device=args.device)
    device = next(model.parameters()).device
    tokens = _encode(tokenizer, args.input, args.tokens, "--input", "--tokens", required=True)
    inputs: object = tokens.to(device)
    if model.config.arch == "encoder-decoder":
        src = _encode(tokenizer, args.src, args.src_tokens, "--src", "--src-tokens", required=True)
        inputs = {"tokens": inputs, "src": src.to(device)}
    elif args.src or args.src_tokens:
        raise InputError(f"--src is only for encoder-decoder models; this one is {model.config.arch!r}")
    answer = None
    if args.answer is not None:
        ids = [int(args.answer)] if args.tokens is not None else (tokenizer.encode(args.answer) if tokenizer else [])
        if len(ids) != 1:
            raise InputError(f"--answer must be exactly one token, {args.answer!r} encodes to {len(ids)}")
        answer = ids[0]
    if args.fold:
        model = fold_weights(model, center_writing_weights=model.config.norm == "layernorm" and model.config.norm_position == "pre"
                             and bool(model.config.final_norm))
    title = args.title or f"glassformer inspect: {args.dir}"
    path, summary = write_report(args.html, model, inputs, tokenizer=tokenizer, answer=answer, title=title, top_k=args.top_k)
    print(f"wrote {path} ({summary['bytes'] / 1024:.0f} KB)")
    print("prediction: " + ", ".join(f"{t!r} {p:.3f}" for t, p in summary["prediction"]))
    for name, (head, score) in summary.get("strongest_heads", {}).items():
        print(f"strongest {name.replace('_', ' ')} head: {head} ({'n/a' if score is None else f'{score:.3f}'})")
    if "attribution" in summary:
        top = ", ".join(f"{n} {v:+.2f}" for n, v in summary["attribution"]["top"][:3])
        print(f"direct logit attribution of {summary['attribution']['target']} = {summary['attribution']['total']:.3f}: {top}")
    return 0


def _encode(tokenizer, text: str | None, ids: str | None, text_flag: str, ids_flag: str, required: bool) -> torch.Tensor:
    if text is not None and ids is not None:
        raise InputError(f"give {text_flag} or {ids_flag}, not both")
    if ids is not None:
        try:
            values = [int(x) for x in ids.replace(" ", "").split(",") if x]
        except ValueError:
            raise InputError(f"{ids_flag} must be comma-separated integers, got {ids!r}") from None
    elif text is not None:
        if tokenizer is None:
            raise InputError(f"this checkpoint has no tokenizer: give token ids with {ids_flag}")
        values = list(tokenizer.encode(text))
    elif required:
        raise InputError(f"give the input with {text_flag} TEXT or {ids_flag} IDS")
    else:
        return None
    if not values:
        raise InputError(f"{text_flag}/{ids_flag} is empty")
    return torch.tensor(values, dtype=torch.long)[None]  # [1, pos]
