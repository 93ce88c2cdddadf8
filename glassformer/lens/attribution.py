"""Direct logit attribution: how much each component's write into the residual stream moves a logit.

With the final norm's scale fixed at its cached value (see ``cache.py``), the logit of token ``t`` at
position ``p`` splits exactly over the decomposed residual stream ``resid = sum_c x_c``:

    logit_t = sum_c  LN(x_c) . W_U[:, t]   +   (b_norm . W_U[:, t] + b_U[t])
              ^ component c's direct effect      ^ the constant "unembed bias" term

where LN(x) = (x - mean(x)) / scale * w. For a logit *difference* between an answer ``a`` and a wrong
token ``b`` the direction is W_U[:, a] - W_U[:, b]. "Direct" means only the path straight to the
logits: what a head's output does through later layers is not counted here (patching measures that).

A vision model (``input="patches"``) has no vocabulary: its class logits read the class token's final
residual, class_logits = LN(resid[:, 0]) W_cls + b_cls (``SequenceClassifier``), so the same split holds with
W_cls in place of W_U, at position 0 only, with b_cls in the constant term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.lens.cache import ActivationCache, ModelInput, run_with_cache


@dataclass
class Attribution:
    """Each component's direct contribution; ``values.sum(0)`` equals ``total`` (up to float rounding)."""

    labels: list[str]  # "embed", "pos_embed", "L0H0", ..., "L1_mlp", "bias", "unembed bias"
    values: torch.Tensor  # [components, batch]
    total: torch.Tensor  # [batch]: the model's actual logit (difference)

    def mean(self) -> torch.Tensor:
        """Each component's contribution averaged over the batch: [components]."""
        return self.values.mean(-1)

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` components with the largest mean |contribution|, signed, largest first."""
        mean = self.mean()
        order = mean.abs().argsort(descending=True)[:k]
        return [(self.labels[i], float(mean[i])) for i in order]


def readout(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The linear map from the final (normed) residual to the forward's logits: (W [d_model, n_out], b [n_out]
    or None). W_U and b_U; for a vision model the class-token classifier's W_cls and b_cls."""
    if model.unembed is None:  # vision: forward returns class logits read from the class token
        return model.classifier.W.detach(), model.classifier.b.detach()  # [d_model, n_classes], [n_classes]
    b_U = model.unembed.b_U
    return model.unembed.weight.detach(), None if b_U is None else b_U.detach()  # [d_model, d_vocab_out], [d_vocab_out]


def logit_direction(model: nn.Module, answer, wrong=None, batch: int = 1) -> torch.Tensor:
    """The residual direction that reads out a logit (difference): W_U[:, a] (- W_U[:, b]).  [batch, d_model].

    ``answer``/``wrong``: one token id (a class on a vision model: W_cls's columns), or a [batch] tensor of ids."""
    W_U = readout(model)[0]  # [d_model, d_vocab_out]
    a = _ids(answer, batch, W_U.shape[1], "answer")
    direction = W_U[:, a].T  # [batch, d_model]
    if wrong is not None:
        direction = direction - W_U[:, _ids(wrong, batch, W_U.shape[1], "wrong")].T
    return direction


def direct_logit_attribution(
    model: nn.Module,
    cache: ActivationCache | ModelInput,
    answer,
    wrong=None,
    *,
    pos: int | None = None,
    heads: bool = True,
    neurons: bool = False,
) -> Attribution:
    """Split the logit of ``answer`` (minus that of ``wrong``, if given) at position ``pos`` (default: the
    last) over every embedding, head (``heads=True``; else each attention layer) and MLP of the main stack.

    ``cache``: an :class:`ActivationCache` of a full ``run_with_cache``, or model inputs to run.
    ``answer``/``wrong``: a token id or [batch] ids. Works on any pre-norm (or norm-free) model. On a vision
    model they are classes and the split is of the class logit, read at the class token (``pos`` 0 or None).
    ``neurons=True`` splits each MLP into its neurons (``L0N5``: post[.., 5] W_out[5]; the b_out go to ``bias``):

        logit = sum_h LN(z_h W_O[h]) . u  +  sum_i post_i LN(W_out[i]) . u  +  ...     (u = W_U[:, a] (- W_U[:, b]))

    and the values still sum to the logit exactly.
    """
    if getattr(model, "unembed_transform", None) is not None:
        raise InputError("direct logit attribution needs logits linear in the final residual stream; this model's "
                         "unembed_transform (BERT's MLM head: a dense layer, activation and norm) is not")
    if not isinstance(cache, ActivationCache):
        _, cache = run_with_cache(model, cache)
    vision = model.unembed is None
    if vision:
        if pos not in (None, 0) or isinstance(pos, bool):
            raise InputError(f"a vision model's class logits read only the class token (position 0): pos={pos!r} "
                             "has no logit to attribute; leave pos out")
        pos = 0
    elif pos is None:
        pos = -1
    n_pos = cache["logits"].shape[1]
    if not vision and (isinstance(pos, bool) or not isinstance(pos, int) or not -n_pos <= pos < n_pos):
        raise InputError(f"pos must be an int in [{-n_pos}, {n_pos}), got {pos!r}")
    resid, labels = cache.decompose_resid(heads=heads, neurons=neurons, pos=pos)  # [components, batch, d_model]
    normed = cache.apply_ln_final(resid, pos=pos)  # [components, batch, d_model]
    batch = normed.shape[1]
    direction = logit_direction(model, answer, wrong, batch).to(normed.dtype)  # [batch, d_model]
    values = torch.einsum("cbd,bd->cb", normed, direction)  # [components, batch]
    constant = torch.zeros(batch, dtype=values.dtype)
    b_norm = cache.final_norm_bias()
    if b_norm is not None:
        constant = constant + direction @ b_norm.to(direction.dtype)
    b_U = readout(model)[1]  # [d_vocab_out] (vision: b_cls [n_classes]) or None
    if b_U is not None:
        a = _ids(answer, batch, b_U.shape[0], "answer")
        constant = constant + b_U[a] - (b_U[_ids(wrong, batch, b_U.shape[0], "wrong")] if wrong is not None else 0)
    if b_norm is not None or b_U is not None:
        values = torch.cat([values, constant[None]])
        labels = labels + ["unembed bias"]
    logits = cache["logits"] if vision else cache["logits"][:, pos]  # [batch, d_vocab_out] (vision: [batch, n_classes])
    total = logits.gather(-1, _ids(answer, batch, logits.shape[-1], "answer")[:, None])[:, 0]
    if wrong is not None:
        total = total - logits.gather(-1, _ids(wrong, batch, logits.shape[-1], "wrong")[:, None])[:, 0]
    return Attribution(labels, values, total)


def _ids(token, batch: int, vocab: int, what: str) -> torch.Tensor:
    ids = torch.as_tensor(token, dtype=torch.long)
    if ids.dim() == 0:
        ids = ids.expand(batch)
    if ids.shape != (batch,):
        raise InputError(f"{what} must be one token id or [batch] = [{batch}] ids, got shape {tuple(ids.shape)}")
    if ids.min() < 0 or ids.max() >= vocab:
        raise InputError(f"{what} token id out of range [0, {vocab})")
    return ids
