"""Sampling one token at a time with the KV cache, for the page's Generate tab.

Each browser tab names a *stream*; the server keeps that stream's :class:`~glassformer.model.kv_cache.KVCache`
and the ids it holds. A step whose input extends the held ids feeds only the new tokens
(``model(new, cache=cache)``), so stepping through a generation costs one token per step; any other
input starts a fresh cache. The next token is drawn by the library's sampler:

    p = softmax(filter_top_k_top_p(logits / T))         (T = 0: greedy, the argmax)
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

import torch

from glassformer.errors import InputError
from glassformer.model.generate import filter_logits, next_token

SHOWN = 10  # candidates listed with their probabilities


@dataclass
class _Stream:
    subject_id: int
    ids: list[int]
    cache: object  # KVCache
    logits: torch.Tensor  # [d_vocab_out] after the last held id


@dataclass
class SampleRequest:
    tokens: list[int]
    stream: str = "default"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0


class Sampler:
    """Holds up to ``size`` streams (least recently used dropped first)."""

    def __init__(self, size: int = 32):
        self.size, self._streams, self._lock = size, OrderedDict(), Lock()

    def step(self, subject, req: SampleRequest) -> dict:
        model, cfg = subject.model, subject.model.config
        if not (cfg.arch == "decoder" and subject.compiled is None):
            raise InputError("stepping through generation needs a decoder (a causal language model)")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", req.stream):
            raise InputError("stream must be 1-64 letters, digits, '-' or '_'")
        if req.temperature < 0 or req.temperature > 10:
            raise InputError(f"temperature must be in [0, 10], got {req.temperature}")
        if len(req.tokens) >= cfg.n_ctx:
            raise InputError(f"the context is full ({cfg.n_ctx} tokens): shorten the input to generate more")
        with self._lock:
            held = self._streams.pop(req.stream, None)
        ids = list(req.tokens)
        if held is not None and held.subject_id == id(subject) and ids[: len(held.ids)] == held.ids:
            cache, reused = held.cache, len(held.ids)
        else:
            cache, reused = model.new_cache(), 0
        new = ids[reused:]
        with torch.no_grad():
            if new:
                logits = model(torch.tensor([new]), cache=cache)[0, -1].float()  # [d_vocab_out]
            else:
                logits = held.logits
        with self._lock:
            self._streams[req.stream] = _Stream(id(subject), ids, cache, logits)
            while len(self._streams) > self.size:
                self._streams.popitem(last=False)
        if req.temperature == 0:
            probs = torch.zeros_like(logits).scatter_(0, logits.argmax()[None], 1.0)  # greedy: all mass on the argmax
        else:
            probs = filter_logits(logits[None] / req.temperature, top_k=req.top_k, top_p=req.top_p)[0].softmax(-1)
        g = torch.Generator().manual_seed(req.seed * 100_003 + len(ids))  # reproducible per (seed, position)
        token = int(next_token(logits[None], greedy=req.temperature == 0, temperature=max(req.temperature, 1e-8),
                               top_k=req.top_k, top_p=req.top_p, generator=g)[0])
        p, order = probs.topk(min(SHOWN, probs.shape[0]))
        return {
            "token": {"id": token, "text": subject.out_labels[token], "p": round(float(probs[token]), 4)},
            "text": subject.decode(ids + [token]),
            "candidates": [{"id": int(i), "text": subject.out_labels[int(i)], "p": round(float(q), 4)} for q, i in zip(p, order)],
            "kept": int((probs > 0).sum()),  # tokens left after top-k / top-p
            "cache": {"reused": reused, "fed": len(new), "held": len(ids)},
        }
