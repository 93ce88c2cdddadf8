"""How every command opens a model and turns what the user typed into the ids the model reads.

``sample``, ``inspect`` and ``explain`` (and ``diagram``) all go through these two functions, so one input
means the same computation everywhere:

    checkpoint = open_model("runs/sort-compiled")          # a checkpoint folder, or a .json/.toml config
    ids = encode_input(checkpoint, text="dcab")             # [1, pos]: here [BOS, d, c, a, b]

The rules, in order:

* ``ids`` ("3,1,4"): the model's own token ids, used exactly as given.
* a compiled RASP program (``extra.json`` holds its encoders): the program's own encoding, the start
  token BOS first (``CompiledModel.encode``), which the compiled weights rely on.
* a tokenizer: its encoding of the text; an encoder classifier trained on a task with a class token
  reads it at position 0, so it is put in front when the text does not start with it.
* no tokenizer: the text must be token ids.
* an imported encoder-decoder (T5; ``extra.json`` holds ``seq2seq``): the decoder's input (not ``source=True``)
  is what Hugging Face feeds it, the start token (T5: ``<pad>``) then the text's tokens without the ``</s>`` the
  tokenizer appends (``decoder_input``); the source keeps it.

``residual_labels(checkpoint)`` names the residual dimensions of a compiled model (``tokens=a``,
``indices=3``), for the tools that show the residual stream (inspect, explain, diagram).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from glassformer.errors import InputError


def open_model(path: str | Path, device: str | None = None, seed: int = 0):
    """A checkpoint folder (or a training run's folder) as a :class:`~glassformer.train.checkpoint.Checkpoint`,
    or a ``.json`` / ``.toml`` model config built with random weights (seed ``seed``) in one."""
    from glassformer.model import ModelConfig, Transformer
    from glassformer.train.checkpoint import Checkpoint, load_checkpoint

    p = Path(path)
    if p.is_dir():
        return load_checkpoint(p, device=device)
    if p.suffix.lower() in (".json", ".toml"):
        config = ModelConfig.load(p)
        torch.manual_seed(seed)
        model = Transformer(config).eval()
        return Checkpoint(path=p, config=config, model=model.to(device) if device else model)
    raise InputError(f"{path} is neither a checkpoint folder nor a model config file (.json or .toml)")


def is_compiled(checkpoint) -> bool:
    """Whether the checkpoint holds a compiled RASP program (its encoders are in ``extra.json``)."""
    return isinstance(getattr(checkpoint, "extra", None), dict) and isinstance(checkpoint.extra.get("rasp"), dict)


def residual_labels(checkpoint) -> list[str] | None:
    """One name per residual dimension (a compiled model's ``tokens=a``, ``indices=3``, ...), or None."""
    labels = checkpoint.extra.get("rasp", {}).get("residual_labels") if is_compiled(checkpoint) else None
    d_model = checkpoint.model.config.d_model
    return [str(label) for label in labels] if isinstance(labels, list) and len(labels) == d_model else None


def encode_input(checkpoint, text: str | None = None, ids: str | None = None, *, what: str = "--input",
                 ids_flag: str = "--tokens", source: bool = False) -> torch.Tensor:
    """The ids [1, pos] that ``checkpoint.model`` reads for the user's ``text`` (or literal ``ids``), by the
    rules of the module docstring, on the model's device."""
    if text is not None and ids is not None:
        raise InputError(f"give {what} or {ids_flag}, not both")
    if ids is not None:
        values = parse_ids(ids, ids_flag)
    elif text is None:
        raise InputError(f"give the input with {what} TEXT or {ids_flag} IDS")
    elif is_compiled(checkpoint):
        values = _compiled_program_ids(checkpoint, text, what)
    elif checkpoint.tokenizer is not None:
        values = [int(i) for i in checkpoint.tokenizer.encode(text)]
        values = _with_class_token(checkpoint, text, values)
        if not source and seq2seq_tokens(checkpoint) is not None:
            values = decoder_input(seq2seq_tokens(checkpoint), values)
    else:
        values = parse_ids(text, what)
    if not values:
        raise InputError(f"{what} {text if ids is None else ids!r} encodes to no tokens")
    device = next(checkpoint.model.parameters()).device
    return torch.tensor([values], dtype=torch.long, device=device)  # [1, pos]


def seq2seq_tokens(checkpoint) -> dict | None:
    """An imported encoder-decoder's ``{"decoder_start_token_id": ..., "eos_token_id": ...}`` (``extra.json``'s
    ``seq2seq``, written by ``glassformer import``), or None for every other checkpoint."""
    extra = getattr(checkpoint, "extra", None)
    tokens = extra.get("seq2seq") if isinstance(extra, dict) else None
    return tokens if isinstance(tokens, dict) and {"decoder_start_token_id", "eos_token_id"} <= set(tokens) else None


def decoder_input(tokens: dict, values: list[int]) -> list[int]:
    """The decoder input Hugging Face builds from a target (``_shift_right``): the start token, then the target's
    tokens; the ``</s>`` a T5 tokenizer appends is the answer's end, not part of the input, so it is dropped."""
    start, eos = int(tokens["decoder_start_token_id"]), int(tokens["eos_token_id"])
    values = values[:-1] if values and values[-1] == eos else values
    return values if values[:1] == [start] else [start, *values]


def seq2seq_prompt(checkpoint, task, prompt: str, stops):
    """What an encoder-decoder decodes from: (source ids [1, src_pos], decoder start ids, stop ids). A pairs task's
    separator and [EOS] (``stops``), or an imported T5's decoder_start_token_id and eos_token_id (``seq2seq_tokens``)."""
    src = encode_input(checkpoint, prompt, what="--prompt", source=True)  # [1, src_pos]
    if task is not None and getattr(task, "sep", ""):
        return src, checkpoint.tokenizer.encode(task.sep), stops
    tokens = seq2seq_tokens(checkpoint)
    if tokens is None:
        raise InputError(f"{checkpoint.path}: an encoder-decoder needs its task's start token to decode")
    return src, [int(tokens["decoder_start_token_id"])], [int(tokens["eos_token_id"])]


def parse_ids(text: str, what: str) -> list[int]:
    """Token ids written as '3,1,4' or '3 1 4'."""
    parts = [s for s in re.split(r"[,\s]+", text.strip()) if s]
    if not parts or not all(re.fullmatch(r"\d+", s) for s in parts):
        raise InputError(f"{what} must be token ids like '3,1,4' (this model has no tokenizer or you asked for ids), got {text!r}")
    return [int(s) for s in parts]


def _compiled_program_ids(checkpoint, text: str, what: str) -> list[int]:
    """A compiled program's input encoding: BOS, then each element's id (``CompiledModel.encode``)."""
    from glassformer.rasp.cli import parse_input
    from glassformer.rasp.compiler.compiled import CompiledModel

    compiled = CompiledModel.load(checkpoint.path)
    elements = parse_input(text, None, compiled.vocab)
    if not elements:
        raise InputError(f"{what} is empty: a compiled program needs at least one input element")
    return compiled.encode(elements).tolist()


def _with_class_token(checkpoint, text: str, values: list[int]) -> list[int]:
    """An encoder classifier trained on a task with a class token reads it at position 0 (as in training)."""
    from glassformer.train.tasks.base import CLS

    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    lookup = getattr(tokenizer, "token_to_id", None) or (lambda t: getattr(tokenizer, "stoi", {}).get(t))
    cls_id = lookup(CLS) if getattr(checkpoint, "task", None) is not None and tokenizer is not None else None
    if cls_id is None or model.config.arch != "encoder" or not model.config.n_classes or text.startswith(CLS):
        return values
    return [cls_id, *values]
