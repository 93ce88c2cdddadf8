"""The tokenizer a model carries: text in, token ids out, as TransformerLens's ``to_tokens`` family.

The model package imports nothing above it, so ``model.tokenizer`` is any object with
``encode(text) -> list[int]`` and ``decode(ids) -> str`` (glassformer's CharTokenizer / BPETokenizer are
two); the loaders set it (``glassformer.load``, ``glassformer.from_hf`` of a folder, ``glassformer import``
and the Trainer). ``None`` means the model reads token ids only.

    model.to_tokens("to be or")          # LongTensor [1, pos] on the model's device
    model.to_str_tokens("to be or")      # ['t', 'o', ' ', 'b', ...]: each token as text
    model.to_string(tokens)              # the text of [pos] ids, or a list of texts for [batch, pos]
"""

from __future__ import annotations

import torch

from glassformer.errors import InputError


class TokenizerMixin:
    """``to_tokens`` / ``to_str_tokens`` / ``to_string`` through ``self.tokenizer``."""

    tokenizer = None  # set by the loaders; an instance attribute once set

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise InputError(
                "this model has no tokenizer (model.tokenizer is None): pass token ids, or set model.tokenizer "
                "(glassformer.load and glassformer import set it from the checkpoint)"
            )
        return self.tokenizer

    def to_tokens(self, text: str | list[str], prepend_bos: bool = False) -> torch.Tensor:
        """Token ids of ``text`` -> [1, pos]; a list of texts that encode to equal lengths -> [batch, pos]
        (texts of different lengths: ``glassformer.model.generate.left_pad``). ``prepend_bos`` puts the
        tokenizer's ``bos_token_id`` first, when it has one."""
        tokenizer = self._require_tokenizer()
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InputError(f"to_tokens takes a string or a list of strings, got {type(text).__name__}")
        rows = [list(tokenizer.encode(t)) for t in texts]
        if prepend_bos:
            bos = getattr(tokenizer, "bos_token_id", None)
            if bos is None:
                raise InputError("prepend_bos=True, but the model's tokenizer has no beginning-of-sequence token")
            rows = [[bos] + r for r in rows]
        lengths = sorted({len(r) for r in rows})
        if len(lengths) > 1:
            raise InputError(f"the texts encode to different lengths {lengths}: pad them (glassformer.model.generate.left_pad)")
        device = next(self.parameters()).device
        return torch.tensor(rows, dtype=torch.long, device=device)  # [batch, pos]

    def to_str_tokens(self, tokens: str | torch.Tensor | list[int]) -> list[str]:
        """Each token of a text (or of [pos] ids, or [1, pos]) as its own text."""
        tokenizer = self._require_tokenizer()
        ids = self.to_tokens(tokens)[0] if isinstance(tokens, str) else torch.as_tensor(tokens)
        if ids.dim() == 2 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.dim() != 1:
            raise InputError(f"to_str_tokens takes a text or one sequence of ids, got shape {tuple(ids.shape)}")
        return [tokenizer.decode([i]) for i in ids.tolist()]

    def to_string(self, tokens: torch.Tensor | list[int]) -> str | list[str]:
        """The text of [pos] ids, or one text per row of [batch, pos]."""
        tokenizer = self._require_tokenizer()
        ids = torch.as_tensor(tokens)
        if ids.dim() == 2:
            return [tokenizer.decode(row) for row in ids.tolist()]
        if ids.dim() != 1:
            raise InputError(f"to_string takes [pos] or [batch, pos] ids, got shape {tuple(ids.shape)}")
        return tokenizer.decode(ids.tolist())


__all__ = ["TokenizerMixin"]
