"""The logit lens (nostalgebraist 2020): read the residual stream after every layer as if it were the last.

For the stream ``resid_l`` before block ``l`` (and the final one after the last block),

    logits_l = Norm_final(resid_l) W_U + b_U          log_probs_l = log_softmax(logits_l)

with the final norm recomputed on ``resid_l`` itself. Where ``log_probs_l`` already agrees with the
model's output, the answer was in the stream by layer ``l``. A *tuned* lens (see ``tuned_lens.py``)
first maps ``resid_l`` through a learned per-layer affine translator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from glassformer.errors import InputError
from glassformer.lens.cache import ModelInput, run_with_cache
from glassformer.model.norms import LayerNorm, NoNorm, RMSNorm


def unembed_resid(model: nn.Module, resid: torch.Tensor) -> torch.Tensor:
    """logits = Norm_final(resid) W_U + b_U (through BERT's unembed transform if the model has one) for any stack of residual vectors [..., d_model] ->
    [..., d_vocab_out], with the norm recomputed per vector. Weights are read detached and no hook fires,
    so gradients flow only into ``resid`` (what a tuned lens trains through)."""
    require_unembedding(model)
    norm = model.ln_final
    if isinstance(norm, LayerNorm):
        b = norm.b.detach() if norm.b is not None else None
        x = F.layer_norm(resid, resid.shape[-1:], norm.w.detach(), b, norm.eps)
    elif isinstance(norm, RMSNorm):
        x = resid / (resid.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt() * norm.w.detach()
    elif isinstance(norm, NoNorm):
        x = resid
    else:
        raise InputError(f"unembed_resid does not know the final norm {type(norm).__name__}")
    transform = getattr(model, "unembed_transform", None)
    if transform is not None:  # BERT's MLM head: Norm(act(x W_T + b_T)), run with detached weights
        params = {name: t.detach() for name, t in transform.named_parameters()}
        x = torch.func.functional_call(transform, params, (x,))
    logits = x @ model.unembed.weight.detach()  # [..., d_vocab_out]
    b_U = model.unembed.b_U
    return logits + b_U.detach() if b_U is not None else logits


def require_unembedding(model: nn.Module) -> None:
    """Refuse, with the reason, a model without a vocabulary to read the residual stream in."""
    if getattr(model, "unembed", None) is None:
        raise InputError("this model has no unembedding W_U (a vision model classifies its class token): there is no "
                         "vocabulary to read the residual stream in")


@dataclass
class LensResult:
    """The lens's prediction after every layer: ``log_probs[i]`` reads the stream labelled ``labels[i]``."""

    labels: list[str]  # "0_pre", "1_pre", ..., "final"
    log_probs: torch.Tensor  # [layers, batch, pos, d_vocab_out]

    @property
    def probs(self) -> torch.Tensor:
        return self.log_probs.exp()  # [layers, batch, pos, d_vocab_out]

    def top_k(self, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` most likely tokens after every layer: ``(probs, ids)``, each [layers, batch, pos, k]."""
        if not isinstance(k, int) or not 1 <= k <= self.log_probs.shape[-1]:
            raise InputError(f"top_k: k must be an int in [1, {self.log_probs.shape[-1]}], got {k!r}")
        log_p, ids = self.log_probs.topk(k, dim=-1)
        return log_p.exp(), ids

    def prob_of(self, token: int | torch.Tensor) -> torch.Tensor:
        """p_l(token) after every layer: [layers, batch, pos]. ``token`` is one id, or ids [batch, pos]
        (e.g. each position's next token), or [batch] (one per sequence)."""
        return self._gather(token).exp()

    def rank_of(self, token: int | torch.Tensor) -> torch.Tensor:
        """How many tokens the lens ranks above ``token`` (0 = top-1): [layers, batch, pos]."""
        chosen = self._gather(token)  # [layers, batch, pos]
        return (self.log_probs > chosen[..., None]).sum(-1)

    def kl_to_final(self) -> torch.Tensor:
        """KL(p_final || p_l) in nats after every layer: [layers, batch, pos] (the last row is 0)."""
        final = self.log_probs[-1:]  # [1, batch, pos, vocab]
        return (final.exp() * (final - self.log_probs)).sum(-1)

    def _gather(self, token: int | torch.Tensor) -> torch.Tensor:
        layers, batch, pos, vocab = self.log_probs.shape
        ids = torch.as_tensor(token, dtype=torch.long, device=self.log_probs.device)
        if ids.dim() == 0:
            ids = ids.expand(batch, pos)
        elif ids.dim() == 1 and ids.shape[0] == batch:
            ids = ids[:, None].expand(batch, pos)
        if ids.shape != (batch, pos):
            raise InputError(f"token must be an id, [batch] = [{batch}] or [batch, pos] = [{batch}, {pos}] ids, got {tuple(ids.shape)}")
        if ids.min() < 0 or ids.max() >= vocab:
            raise InputError(f"token id out of range [0, {vocab})")
        return self.log_probs.gather(-1, ids[None, ..., None].expand(layers, batch, pos, 1))[..., 0]


def resid_names(model: nn.Module, incl_mid: bool = False):
    """The hook-name filter that caches only the main stack's residual stream (what a lens reads)."""
    suffixes = ("resid_pre", "resid_post") + (("resid_mid", "resid_mid_cross") if incl_mid else ())
    return lambda name: not name.startswith("encoder.") and name.rsplit(".", 1)[-1] in suffixes


def logit_lens(model: nn.Module, inputs: ModelInput, *, incl_mid: bool = False, tuned=None) -> LensResult:
    """Run ``model`` on ``inputs`` and read its main stack after every block through the unembedding.

    ``inputs``: token ids [batch, pos] (or [pos]), or a mapping with ``tokens`` and e.g. ``src`` for an
    encoder-decoder. ``tuned``: a :class:`~glassformer.lens.tuned_lens.TunedLens` whose translators are
    applied first (then ``incl_mid`` must be False: translators exist per block input). A Transformer-XL
    input longer than n_ctx is read in segments: the lens shows the last one (what the cache keeps).
    """
    if tuned is not None and incl_mid:
        raise InputError("a tuned lens has one translator per block input: use incl_mid=False with tuned=")
    require_unembedding(model)
    _, cache = run_with_cache(model, inputs, names=resid_names(model, incl_mid))
    resid, labels = cache.accumulated_resid(incl_mid=incl_mid)  # [layers, batch, pos, d_model]
    with torch.no_grad():
        if tuned is not None:
            resid = torch.cat([tuned(resid[:-1]), resid[-1:]])  # the final stream is read as it is
        log_probs = unembed_resid(model, resid).float().log_softmax(-1)  # [layers, batch, pos, d_vocab_out]
    return LensResult(labels, log_probs)
