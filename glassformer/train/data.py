"""Language modelling on any text file: :class:`TextTask`.

The file is tokenized once (by default one token per character) into a flat array of token ids,
saved under the cache folder (``$GLASSFORMER_CACHE``, else ``~/.cache/glassformer``) as raw
``uint16`` (or ``uint32`` for vocabularies over 65,536) keyed by the file's SHA-256 and the
tokenizer's fingerprint, and memory-mapped from then on. The first 90% of the tokens are the
``"train"`` split, the last 10% the ``"val"`` split (as in nanoGPT's shakespeare_char).
A batch is ``batch_size`` random windows of ``block_size + 1`` tokens: inputs are the first
``block_size``, targets the last (the next token at every position), and every position counts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from glassformer.errors import ConfigError, InputError
from glassformer.train import stream
from glassformer.train.batch import Batch
from glassformer.train.tasks.base import check_choice, check_int
from glassformer.train.tokenizers import MASK, CharTokenizer, Tokenizer, load_tokenizer

TRAIN_FRACTION = 0.9


def cache_dir() -> Path:
    """``$GLASSFORMER_CACHE`` if set, else ``~/.cache/glassformer``."""
    return Path(os.environ.get("GLASSFORMER_CACHE") or Path.home() / ".cache" / "glassformer")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_tokens(path: str | Path, tokenizer: Tokenizer | None = None) -> tuple[np.ndarray, Tokenizer]:
    """``(tokens, tokenizer)``: the whole file's token ids as a read-only memory map, building and
    caching it on first use (the file is read in pieces, never whole: :mod:`glassformer.train.stream`).
    With no tokenizer, a CharTokenizer of the file's characters is made (and cached beside the tokens).
    ``path`` may also be a folder written by ``glassformer prepare`` (its tokens and tokenizer are used)."""
    path = Path(path)
    if stream.is_prepared(path):
        tokens, saved = stream.open_prepared(path)
        if tokenizer is not None and tokenizer != saved and tokenizer != saved.with_specials([MASK]):
            raise InputError(f"{path} was prepared with another tokenizer ({saved!r}); prepare it again or drop --tokenizer")
        return tokens, tokenizer or saved
    if path.is_dir():
        raise InputError(f"{path} is a folder but not one written by `glassformer prepare` (no meta.json)")
    stream.check_text_file(path)
    folder = cache_dir() / "text" / f"{path.stem}-{file_sha256(path)[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        vocab_dir = folder / "char_tokenizer"
        if (vocab_dir / "tokenizer.json").is_file():
            tokenizer = load_tokenizer(vocab_dir)
        else:
            tokenizer = CharTokenizer(sorted(stream.scan_chars(path)))
            tokenizer.save(vocab_dir)
    dtype = stream.token_dtype(tokenizer.vocab_size)
    file = folder / f"tokens-{tokenizer.fingerprint()[:16]}.{dtype.name}"
    if not file.is_file():
        stream.write_tokens(path, tokenizer, file)
    return stream.map_tokens(file, dtype), tokenizer


class TextTask:
    """Next-token prediction on a text file's ``split`` ("train": first 90%, "val" (= "test"): last 10%).

    Same interface as the generated tasks: ``batch(batch_size, arch="decoder", generator=None)``,
    ``n_ctx()``, ``example()``, ``tokenizer``, ``d_vocab``; ``tokens`` is the split's memory-mapped
    token array.
    """

    name = "text"
    description = "language modelling on a text file (one token per character by default)"
    archs = ("decoder",)
    n_classes = 0

    def __init__(self, path: str | Path, block_size: int = 128, split: str = "train",
                 tokenizer: Tokenizer | None = None, seed: int = 0):
        self.path = Path(path)
        self.block_size = check_int(self.name, "block_size", block_size, 1)
        self.split = check_choice(self.name, "split", split, ("train", "val", "test"))
        self.seed = check_int(self.name, "seed", seed, 0)
        self.generator = torch.Generator().manual_seed(seed)
        all_tokens, self.tokenizer = load_tokens(self.path, tokenizer)
        n_train = int(TRAIN_FRACTION * len(all_tokens))
        self.tokens = all_tokens[:n_train] if split == "train" else all_tokens[n_train:]  # [n_split_tokens]
        if len(self.tokens) < block_size + 1:
            raise InputError(
                f"the {split} split of {self.path} has {len(self.tokens)} tokens, fewer than block_size + 1 = "
                f"{block_size + 1}; use a longer file or a smaller block_size"
            )

    @property
    def options(self) -> dict:
        """What rebuilds this task (with the tokenizer saved beside it): ``TextTask(**options, tokenizer=...)``."""
        return {"path": str(self.path), "block_size": self.block_size, "split": self.split, "seed": self.seed}

    @property
    def d_vocab(self) -> int:
        return self.tokenizer.vocab_size

    def __len__(self) -> int:
        return len(self.tokens)

    def n_ctx(self, arch: str = "decoder") -> int:
        self._check_arch(arch)
        return self.block_size

    def _check_arch(self, arch: str) -> None:
        if arch not in self.archs:
            raise ConfigError(f"task {self.name!r} supports arch in {list(self.archs)}, got {arch!r}")

    def with_split(self, split: str) -> "TextTask":
        return TextTask(self.path, self.block_size, split, tokenizer=self.tokenizer, seed=self.seed)

    def windows(self, starts: torch.Tensor, length: int) -> torch.Tensor:
        """``[batch, length]`` int64 token ids of ``tokens[s : s + length]`` for each start ``s``."""
        idx = starts.numpy()[:, None] + np.arange(length)  # [batch, length]
        return torch.from_numpy(self.tokens[idx].astype(np.int64))

    def batch(self, batch_size: int, arch: str = "decoder", generator: torch.Generator | None = None) -> Batch:
        """``batch_size`` random windows: inputs ``tokens[s : s + block_size]``, targets shifted by one."""
        self._check_arch(arch)
        check_int(self.name, "batch_size", batch_size, 1)
        g = self.generator if generator is None else generator
        starts = torch.randint(0, len(self.tokens) - self.block_size, (batch_size,), generator=g)  # [batch]
        window = self.windows(starts, self.block_size + 1)  # [batch, block_size + 1]
        inputs, targets = window[:, :-1], window[:, 1:]  # [batch, block_size] each
        return Batch(inputs.contiguous(), targets.contiguous(), torch.ones_like(targets, dtype=torch.bool))

    def example(self, generator: torch.Generator | None = None, prompt_len: int | None = None,
                answer_len: int = 64) -> tuple[str, str]:
        """``(prompt, continuation)``: a random stretch of the split, cut after ``prompt_len`` tokens
        (default half a block)."""
        prompt_len = self.block_size // 2 if prompt_len is None else prompt_len
        if not 0 < prompt_len < len(self.tokens):
            raise InputError(f"prompt_len must be in 1..{len(self.tokens) - 1} (the split's length - 1), got {prompt_len}")
        answer_len = min(answer_len, len(self.tokens) - prompt_len)
        g = self.generator if generator is None else generator
        start = torch.randint(0, len(self.tokens) - prompt_len - answer_len + 1, (1,), generator=g)
        window = self.windows(start, prompt_len + answer_len)[0]
        return self.tokenizer.decode(window[:prompt_len]), self.tokenizer.decode(window[prompt_len:])

    def __repr__(self) -> str:
        return f"TextTask({str(self.path)!r}, block_size={self.block_size}, split={self.split!r}, d_vocab={self.d_vocab})"


__all__ = ["TextTask", "cache_dir", "file_sha256", "load_tokens"]
