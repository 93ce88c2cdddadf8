"""The training CLI's data options and commands, kept apart from ``train/cli.py`` so each stays small:

* ``train`` flags: ``--pairs FILE``, ``--labels FILE``, ``--images DIR|digits``, ``--tokenizer SPEC``,
  ``--too-long cut|refuse``, ``--init RUN`` (fine-tune a saved or imported model); ``--text FILE --arch
  encoder`` trains a masked LM.
* ``glassformer prepare FILE --tokenizer SPEC --out DIR``: tokenize a (large) text file once, in pieces,
  into a memory-mapped token array (``train --text DIR`` then reads it without loading it).
* ``glassformer fill RUN --input "to be or [MASK] to be"``: a masked LM fills the blanks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from glassformer.errors import ConfigError, InputError

DATA_FLAGS = ("text", "pairs", "labels", "images")


def add_data_sources(what) -> None:
    """The data-file sources, added to ``train``'s mutually exclusive --task / --text group."""
    what.add_argument("--pairs", metavar="FILE", help="source/target pairs (TSV source<TAB>target, or JSONL) for the encoder-decoder")
    what.add_argument("--labels", metavar="FILE", help="labelled text (TSV text<TAB>label, CSV, or JSONL) for an encoder classifier")
    what.add_argument("--images", metavar="DIR", help="an image folder with one sub-folder per class, or 'digits' (scikit-learn's 8x8 digits), for a vision transformer")


def add_data_flags(p) -> None:
    g = p.add_argument_group("data files (--text, --pairs, --labels, --images)")
    g.add_argument("--tokenizer", metavar="SPEC", help="char (default), bpe or bpe:VOCAB_SIZE (trained on the file), or the path of a saved tokenizer.json / folder")
    g.add_argument("--too-long", choices=("cut", "refuse"), default="cut",
                   help="pairs/labels: a record longer than --block-size is cut (and counted), or refused with an error (default: cut)")
    g.add_argument("--init", metavar="RUN", help="start from this checkpoint's weights and tokenizer (fine-tune a trained or imported model)")


def make_data_task(args, arch: str | None, options: dict):
    """The task for a data-file flag, or None when none is given."""
    from glassformer.train.data import TextTask

    tokenizer = _tokenizer(args)
    block = getattr(args, "block_size", None)
    if arch is None and args.init:  # fine-tuning: the checkpoint's architecture decides the objective
        from glassformer.train.checkpoint import load_checkpoint

        arch = load_checkpoint(args.init).config.arch
    if args.text:
        if arch == "encoder":
            from glassformer.train.tasks.masked_lm import MaskedTextTask

            return MaskedTextTask(args.text, block_size=block if block is not None else _text_block(args), tokenizer=tokenizer, **options)
        return TextTask(args.text, block_size=block if block is not None else _text_block(args), tokenizer=tokenizer, **options)
    if args.pairs:
        from glassformer.train.tasks.pairs import PairsTask

        return _noted(PairsTask(args.pairs, tokenizer=tokenizer, block_size=block if block is not None else _init_ctx(args), too_long=args.too_long, **options))
    if args.labels:
        from glassformer.train.tasks.labels import LabelsTask

        return _noted(LabelsTask(args.labels, tokenizer=tokenizer, block_size=block if block is not None else _init_ctx(args), too_long=args.too_long, **options))
    if args.images:
        if tokenizer is not None:
            raise ConfigError("--tokenizer does not apply to --images")
        from glassformer.train.tasks.images import DigitsTask, ImageFolderTask

        return DigitsTask(**options) if args.images == "digits" else ImageFolderTask(args.images, **options)
    return None


def _tokenizer(args):
    """The tokenizer --tokenizer names (trained on the data file where it needs one), or --init's."""
    if args.init:
        if args.tokenizer:
            raise ConfigError("--init brings its model's tokenizer: drop --tokenizer")
        from glassformer.train.checkpoint import load_checkpoint

        return load_checkpoint(args.init).tokenizer
    if not args.tokenizer:
        return None
    from glassformer.train.tokenizers import tokenizer_from_spec

    source = args.text or args.pairs or args.labels
    if source and Path(source).is_dir():
        raise ConfigError(f"{source} is a prepared folder: it already holds its tokenizer, drop --tokenizer")
    return tokenizer_from_spec(args.tokenizer, [source] if source else [])


def _init_ctx(args) -> int | None:
    if not args.init:
        return None
    from glassformer.train.checkpoint import load_checkpoint

    return load_checkpoint(args.init).config.n_ctx


def _text_block(args) -> int:
    from glassformer.train.cli import TEXT_DEFAULTS

    n_ctx = _init_ctx(args)
    return min(TEXT_DEFAULTS["block_size"], n_ctx) if n_ctx else TEXT_DEFAULTS["block_size"]


def _noted(task):
    """Say how many records were cut to fit the context (the tasks cut them with too_long="cut")."""
    if task.n_cut:
        print(f"glassformer: note: {task.n_cut} field(s) of {task.n_records} records were longer than {task.max_tokens} tokens "
              "and were cut (raise --block-size, or pass --too-long refuse to make this an error)", file=sys.stderr)
    return task


def model_fields(task, arch: str) -> dict:
    """The ModelConfig fields the task fixes: vocabulary, context and classes (or a vision task's image shape)."""
    if hasattr(task, "model_fields"):
        return {**task.model_fields(), "arch": arch, "d_vocab_out": None}
    return dict(arch=arch, d_vocab=task.tokenizer.vocab_size, n_ctx=task.n_ctx(arch),
                n_classes=task.n_classes if arch == "encoder" else 0, d_vocab_out=None)


def init_model(args, task, arch: str):
    """--init RUN: the checkpoint's model, checked to fit the task (architecture, vocabulary, context)."""
    from glassformer.train.checkpoint import load_checkpoint

    model = load_checkpoint(args.init).model
    c = model.config
    if args.arch and args.arch != c.arch:
        raise ConfigError(f"--init {args.init} is a {c.arch}; it cannot be trained as --arch {args.arch}")
    if c.arch not in task.archs:
        raise ConfigError(f"--init {args.init} is a {c.arch}, and task {task.name!r} trains {', '.join(task.archs)}")
    if task.tokenizer is not None and task.tokenizer.vocab_size != c.d_vocab:
        raise ConfigError(f"the task's vocabulary has {task.tokenizer.vocab_size} tokens but {args.init}'s model has d_vocab {c.d_vocab}")
    if task.n_ctx(c.arch) > c.n_ctx:
        raise ConfigError(f"the task needs {task.n_ctx(c.arch)} positions but {args.init}'s model has n_ctx {c.n_ctx}: lower --block-size")
    if (task.n_classes if c.arch == "encoder" else 0) != c.n_classes:
        raise ConfigError(f"{args.init}'s model has {c.n_classes} classes, the task {task.n_classes}")
    model.train()
    return model


def after_training(trainer, summary: dict, out: Path) -> dict:
    """Extra held-out scores a data task has, added to ``summary.json``: decoded exact match (pairs),
    the confusion matrix and its plot (classifiers)."""
    task, model = trainer.eval_task, trainer.model
    extra: dict = {}
    if task.name == "pairs":
        from glassformer.train.tasks.pairs import decode_scores

        greedy, beam = decode_scores(model, task), decode_scores(model, task, beam_size=4)
        extra = {"greedy_exact_match": greedy["exact_match"], "greedy_token_accuracy": greedy["token_accuracy"],
                 "beam_exact_match": beam["exact_match"], "beam_token_accuracy": beam["token_accuracy"]}
    elif hasattr(task, "class_names") and hasattr(task, "rows"):
        from glassformer.train.tasks.labels import confusion_matrix, plot_confusion

        counts = confusion_matrix(model, task)
        extra = {"confusion_matrix": counts.tolist(), "classes": task.class_names}
        if trainer.dist.is_main:
            plot_confusion(counts, task.class_names, out / "confusion.png", title=f"{task.name}: held-out confusion matrix")
    if extra and trainer.dist.is_main:
        summary = {**summary, **extra}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if "beam_exact_match" in extra:
            print(f"held-out decoding: greedy exact match {extra['greedy_exact_match']:.2%}, beam (4) {extra['beam_exact_match']:.2%}")
        if "confusion_matrix" in extra:
            print(f"confusion matrix: {out / 'confusion.png'}")
    return summary


# -- commands -------------------------------------------------------------------------------------


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare", help="tokenize a text file once into a memory-mapped token array",
        description="Tokenize FILE in pieces (never loading it whole) into OUT/tokens.bin + tokenizer.json + meta.json; "
        "`glassformer train --text OUT` then memory-maps it.",
    )
    p.add_argument("file", metavar="FILE", help="a UTF-8 text file, of any size")
    p.add_argument("--tokenizer", default="char", metavar="SPEC", help="char, bpe or bpe:VOCAB_SIZE, or a saved tokenizer's path (default: char)")
    p.add_argument("--out", required=True, help="the folder to write")
    p.add_argument("--chunk-mb", type=float, default=4.0, help="MiB read at a time (default: 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)

    p = subparsers.add_parser("fill", help="fill in [MASK] blanks with a masked language model",
                              description="Fill every [MASK] of --input with an encoder trained by `train --text FILE --arch encoder`.")
    p.add_argument("dir", metavar="RUN", help="checkpoint folder or training run folder")
    p.add_argument("--input", required=True, help='text with blanks written [MASK], e.g. "to be or [MASK] to be"')
    p.add_argument("--top-k", type=int, default=3, help="candidates shown per blank (default: 3)")
    p.add_argument("--device", default="cpu", help="device (default: cpu)")
    p.set_defaults(func=cmd_fill)


def cmd_prepare(args) -> int:
    from glassformer.train import stream
    from glassformer.train.tokenizers import tokenizer_from_spec

    if not args.chunk_mb > 0:
        raise InputError(f"--chunk-mb must be > 0, got {args.chunk_mb}")
    chunk = max(1, int(args.chunk_mb * (1 << 20)))
    stream.check_text_file(args.file)
    tokenizer = tokenizer_from_spec(args.tokenizer, [args.file])
    out = stream.prepare(args.file, tokenizer, args.out, chunk_bytes=chunk, progress=not args.quiet)
    meta = json.loads((out / stream.META).read_text())
    print(f"{args.file}: {meta['n_tokens']:,} tokens ({meta['dtype']}, vocabulary {tokenizer.vocab_size}) -> {out / stream.TOKENS}")
    print(f"train on it: glassformer train --text {out} --out runs/...")
    return 0


def cmd_fill(args) -> int:
    from glassformer.train.checkpoint import load_checkpoint
    from glassformer.train.tasks.masked_lm import fill

    checkpoint = load_checkpoint(args.dir, device=args.device)
    if checkpoint.tokenizer is None:
        raise InputError(f"{checkpoint.path} has no tokenizer, so --input cannot be encoded")
    if args.top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {args.top_k}")
    text, choices = fill(checkpoint.model, checkpoint.tokenizer, args.input, top_k=args.top_k)
    print(text)
    for i, options in enumerate(choices, 1):
        print(f"  [MASK] {i}: " + ", ".join(f"{tok!r} {p:.3f}" for tok, p in options))
    return 0


__all__ = ["add_data_flags", "add_data_sources", "after_training", "init_model", "make_data_task", "model_fields", "register"]
