"""What the explorer looks at: a :class:`Subject` is one model with everything needed to read its input
and label its output -- a trained checkpoint, a compiled RASP program, a Hugging Face import, or a config
with random weights.

    subject = load_subject("runs/demo")          # a checkpoint folder (or a run folder holding one)
    subject = load_subject("model.json")         # a config file: random weights (seed 0)
    subject = load_subject("hf-gpt2/")           # a Hugging Face folder (config.json with model_type)
    ids = subject.encode("abc>")                 # token ids, or a GlassformerError naming the problem

Input text is read the way the model's own tools read it: a compiled program's tokens (with its BOS put
in front), a tokenizer's encoding, or token ids written as numbers ("3 1 4") for a model without one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from glassformer.errors import CheckpointError, InputError

KINDS = ("trained", "compiled", "imported", "random")
MAX_INPUT_CHARS = 4096  # longer text is refused before it reaches a tokenizer


@dataclass
class Subject:
    """One model the explorer serves, with its input encoder and output labels."""

    name: str  # what the page calls it: the path it was loaded from
    kind: str  # one of KINDS
    model: Any  # a glassformer Transformer, in eval mode
    tokenizer: Any = None  # encode/decode, or None: input is token ids
    compiled: Any = None  # a CompiledModel for a compiled RASP program
    out_labels: list[str] = field(default_factory=list)  # one per output logit (d_vocab_out)
    example: str = ""  # the input the page starts with
    task: dict | None = None  # the training task's spec {"name", "options"} (what the decompiler reads)
    seq2seq: dict | None = None  # an imported T5's decoder start / end ids: its decoder input gets the start token
    _in_labels: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        cfg = self.model.config
        if cfg.input == "patches" or self.model.unembed is None:
            raise InputError("the explorer reads token models; this is a vision model (input='patches')")
        if not self.out_labels:
            if self.compiled is not None and not self.compiled.output.numerical:
                self.out_labels = ["∅" if c is None else str(c) for c in self.compiled.output.classes]
            elif self.compiled is not None:
                self.out_labels = ["value"] + [f"#{i}" for i in range(1, cfg.d_vocab_out)]
            else:
                self.out_labels = [self.token_text(i) for i in range(cfg.d_vocab_out)]

    # -- reading input ------------------------------------------------------------------------------

    @property
    def input_hint(self) -> str:
        if self.compiled is not None:
            return f"tokens of {self.compiled.vocab} (at most {self.compiled.max_len}); BOS is added in front"
        if self.tokenizer is not None:
            return "text"
        return f"token ids 0..{self.model.config.d_vocab - 1}, separated by spaces or commas"

    def encode(self, text: str, what: str = "input") -> list[int]:
        """Token ids of ``text``, checked against the vocabulary and the context length."""
        if not isinstance(text, str):
            raise InputError(f"{what} must be a string, got {type(text).__name__}")
        if len(text) > MAX_INPUT_CHARS:
            raise InputError(f"{what} is {len(text)} characters long; the explorer reads at most {MAX_INPUT_CHARS}")
        cfg = self.model.config
        if self.compiled is not None:
            items = list(text) if all(isinstance(t, str) and len(t) == 1 for t in self.compiled.vocab) else _items(text, self.compiled.vocab)
            if not items:
                raise InputError(f"{what} is empty: type some of {self.compiled.vocab}")
            ids = self.compiled.encode(items).tolist()
        elif self.tokenizer is not None:
            if not text:
                raise InputError(f"{what} is empty: type some text")
            ids = [int(i) for i in self.tokenizer.encode(text)]
            if self.seq2seq is not None and what == "input":  # the decoder's input, as Hugging Face builds it
                from glassformer.train.inputs import decoder_input

                ids = decoder_input(self.seq2seq, ids)
        else:
            parts = [s for s in re.split(r"[,\s]+", text.strip()) if s]
            if not parts:
                raise InputError(f"{what} is empty: type token ids like '3 1 4'")
            bad = next((s for s in parts if not re.fullmatch(r"\d+", s)), None)
            if bad is not None:
                raise InputError(f"{what}: {bad!r} is not a token id; this model has no tokenizer, so type ids like '3 1 4'")
            ids = [int(s) for s in parts]
            out = next((i for i in ids if i >= cfg.d_vocab), None)
            if out is not None:
                raise InputError(f"{what}: token id {out} is out of range: the vocabulary has {cfg.d_vocab} tokens (0..{cfg.d_vocab - 1})")
        if not ids:
            raise InputError(f"{what} encodes to no tokens")
        if len(ids) > cfg.n_ctx:
            raise InputError(f"{what} is {len(ids)} tokens long; this model's context holds {cfg.n_ctx} (n_ctx)")
        return ids

    # -- labels -------------------------------------------------------------------------------------

    def token_text(self, token_id: int) -> str:
        """A token as readable text (whitespace made visible), or ``#id`` without a tokenizer."""
        token_id = int(token_id)
        if self.compiled is not None and token_id in (0, 1):  # the compiled model's BOS and PAD ids
            return ("BOS", "PAD")[token_id]
        if token_id not in self._in_labels:
            from glassformer.explain.document import token_text

            self._in_labels[token_id] = token_text(self.tokenizer, token_id)
        return self._in_labels[token_id]

    def decode(self, ids: list[int]) -> str:
        """Ids back to the text a user would type (``encode(decode(ids)) == ids`` for the page)."""
        if self.compiled is not None:
            vocab = self.compiled.vocab
            items = [vocab[i - 2] for i in ids if 2 <= i < 2 + len(vocab)]  # BOS and PAD are not typed
            return "".join(items) if all(isinstance(t, str) and len(t) == 1 for t in vocab) else " ".join(map(str, items))
        if self.tokenizer is not None:
            return self.tokenizer.decode(ids)
        return " ".join(map(str, ids))

    def info(self) -> dict:
        """The model's description for the page: config, shape, kind, how to type input."""
        cfg = self.model.config
        n_blocks = cfg.n_decoder_layers if cfg.arch == "encoder-decoder" else cfg.n_layers
        return {
            "name": self.name,
            "kind": self.kind,
            "arch": cfg.arch,
            "causal": cfg.causal,
            "n_layers": n_blocks,
            "n_heads": cfg.n_heads,
            "d_model": cfg.d_model,
            "d_vocab": cfg.d_vocab,
            "d_vocab_out": cfg.d_vocab_out,
            "n_ctx": cfg.n_ctx,
            "has_mlp": not cfg.attn_only,
            "params": self.model.num_params(),
            "config": {k: v for k, v in cfg.to_dict().items() if isinstance(v, (int, float, str, bool, type(None)))},
            "input_hint": self.input_hint,
            "needs_src": cfg.arch == "encoder-decoder",
            "can_generate": cfg.arch == "decoder" and self.compiled is None,
            "example": self.example or self._default_example(),
        }

    def _default_example(self) -> str:
        cfg = self.model.config
        if self.compiled is not None:
            vocab = self.compiled.vocab[: self.compiled.max_len]
            items = (vocab * 2)[: min(self.compiled.max_len, 5)]
            return "".join(items) if all(isinstance(t, str) and len(t) == 1 for t in vocab) else " ".join(map(str, items))
        if self.tokenizer is not None:
            chars = getattr(self.tokenizer, "chars", None)
            if chars:
                letters = [c for c in chars if c.isalnum()][:4] or list(chars[:4])
                return "".join(letters * 2)[: cfg.n_ctx]
            return "Hello world"
        return " ".join(str(i % cfg.d_vocab) for i in [1, 2, 3, 4, 1, 2, 3][: cfg.n_ctx])


def _items(text: str, vocab: list) -> list:
    """Whitespace- or comma-separated tokens, each matched to a vocabulary entry by its text."""
    by_text = {str(t): t for t in vocab}
    items = []
    for part in (s for s in re.split(r"[,\s]+", text.strip()) if s):
        if part not in by_text:
            raise InputError(f"token {part!r} is not in the compiled vocabulary {vocab}")
        items.append(by_text[part])
    return items


def load_subject(path: str | Path, *, seed: int = 0, device: str | None = "cpu") -> Subject:
    """A :class:`Subject` from a checkpoint folder, a compiled program's folder, a Hugging Face folder,
    or a ``.json``/``.toml`` model config (random weights drawn with ``seed``)."""
    from glassformer import ModelConfig, Transformer
    from glassformer.train.checkpoint import load_checkpoint

    p = Path(path)
    name = str(path)
    if p.is_file() and p.suffix.lower() in (".json", ".toml"):
        config = ModelConfig.load(p)
        torch.manual_seed(seed)
        return Subject(name, "random", Transformer(config).eval())
    if not p.exists():
        raise CheckpointError(f"{path} does not exist: give a checkpoint folder or a model config (.json/.toml)")
    if not p.is_dir():
        raise CheckpointError(f"{path} is neither a checkpoint folder nor a model config file (.json or .toml)")
    hf = _hf_config(p)
    if hf is not None:
        from glassformer import from_hf

        return Subject(name, "imported", from_hf(p).eval(), _hf_tokenizer(p))
    ckpt = load_checkpoint(p, device=device)
    if isinstance(ckpt.extra, dict) and "rasp" in ckpt.extra:
        from glassformer.rasp.compiler.compiled import CompiledModel

        compiled = CompiledModel.load(p, device=device)
        compiled.model.eval()
        return Subject(name, "compiled", compiled.model, compiled.tokenizer(), compiled)
    kind = "imported" if isinstance(ckpt.extra, dict) and ckpt.extra.get("imported_from") else "trained"
    task = ckpt.task if isinstance(ckpt.task, dict) and "name" in ckpt.task else None
    from glassformer.train.inputs import seq2seq_tokens

    return Subject(name, kind, ckpt.model.eval(), ckpt.tokenizer, example=_task_example(ckpt), task=task, seq2seq=seq2seq_tokens(ckpt))


def _task_example(ckpt) -> str:
    """A training task's example (prompt and all but the answer's last token), or "" without one."""
    if not ckpt.task or ckpt.tokenizer is None:
        return ""
    try:
        from glassformer.train.tasks import get_task

        prompt, answer = get_task(ckpt.task["name"], **ckpt.task.get("options", {})).example(torch.Generator().manual_seed(0))
    except Exception:  # an old or unknown task spec: the page falls back to a generic input
        return ""
    return prompt + answer[:-1] if ckpt.config.arch == "decoder" else prompt


def subject_of(model, tokenizer=None, *, name: str = "model", kind: str = "trained") -> Subject:
    """A :class:`Subject` for a model already in memory (a Transformer, or a CompiledModel)."""
    from glassformer.rasp.compiler.compiled import CompiledModel

    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(model, CompiledModel):
        return Subject(name, "compiled", model.model.eval(), model.tokenizer(), model)
    return Subject(name, kind, model.eval(), tokenizer)


def _hf_config(folder: Path) -> dict | None:
    """A Hugging Face ``config.json`` (it names a ``model_type``), or None for anything else."""
    f = folder / "config.json"
    if (folder / "checkpoint.json").exists() or (folder / "checkpoint" / "checkpoint.json").exists() or not f.is_file():
        return None
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "model_type" in data else None


def _hf_tokenizer(folder: Path):
    """GPT-2's byte-level BPE from ``vocab.json`` + ``merges.txt`` when the folder has them, else None."""
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        from glassformer.train.tokenizers import BPETokenizer

        return BPETokenizer.from_vocab_merges(folder / "vocab.json", folder / "merges.txt")
    return None
