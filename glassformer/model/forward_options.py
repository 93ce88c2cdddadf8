"""Forward options of :class:`~glassformer.Transformer`: run part of the stack, or return the loss.

    stop_at_layer=l    ->  resid_pre[l] = resid_0 + sum_{l' < l} (attn_out[l'] + mlp_out[l'])   [batch, pos, d_model]
    start_at_layer=l   ->  the input *is* resid_pre[l]; blocks l .. L-1, the final norm and W_U follow
    return_type="loss" ->  mean_{b,t} -log softmax(logits[b, t])[targets[b, t]]   over targets != -100

A decoder's default targets are the next tokens: targets[:, t] = tokens[:, t + 1] (the last position, and
any position whose own or next token is padding, is ignored). Any other model needs ``targets=``:
[batch, pos] token ids (an encoder's masked-language-model labels) or [batch] class ids (a classifier).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glassformer.errors import InputError

RETURN_TYPES = ("logits", "loss", "loss_per_token", "both")
IGNORE = -100


def layer_index(layer, n_blocks: int, what: str) -> int:
    """A block boundary 0 .. n_blocks (negative counts from the end, like Python)."""
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n_blocks <= layer <= n_blocks:
        raise InputError(f"{what} must be an int in [{-n_blocks}, {n_blocks}] for a stack of {n_blocks} blocks, got {layer!r}")
    return layer if layer >= 0 else n_blocks + layer


def check_forward_options(model, return_type, start_at_layer, stop_at_layer, cache, segment_memory) -> None:
    if return_type not in RETURN_TYPES:
        raise InputError(f"return_type must be one of {RETURN_TYPES}, got {return_type!r}")
    if start_at_layer is None and stop_at_layer is None:
        return
    if stop_at_layer is not None and return_type != "logits":
        raise InputError(f"stop_at_layer returns the residual stream, not logits: return_type={return_type!r} needs the full stack")
    if cache is not None or segment_memory is not None or model.config.memory_len:
        raise InputError("start_at_layer / stop_at_layer run part of the stack once: not with a KV cache or a "
                         "Transformer-XL memory")


def check_residual(x, d_model: int) -> torch.Tensor:
    """The input of ``start_at_layer``: a float tensor [batch, pos, d_model]."""
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise InputError(f"with start_at_layer the input is the residual stream (a float tensor [batch, pos, d_model]), "
                         f"got {getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() != 3 or x.shape[-1] != d_model or x.shape[1] == 0:
        raise InputError(f"with start_at_layer the input must have shape [batch, pos, d_model = {d_model}], got {tuple(x.shape)}")
    return x


def cross_entropy_loss(model, logits, tokens, targets, attention_mask, *, per_token: bool) -> torch.Tensor:
    """The cross-entropy of ``targets`` under ``logits`` (see the module docstring): a scalar, or per
    position [batch, pos] (0 where ignored) with ``per_token``."""
    if targets is None:
        targets = next_token_targets(model, logits, tokens, attention_mask)  # [batch, pos]
    if not isinstance(targets, torch.Tensor) or targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise InputError(f"targets must be an integer tensor of ids, got {getattr(targets, 'dtype', type(targets).__name__)}")
    if targets.shape != logits.shape[:-1]:
        raise InputError(f"targets has shape {tuple(targets.shape)}; the logits need {tuple(logits.shape[:-1])}")
    real = targets != IGNORE
    if real.any() and (targets[real].min() < 0 or targets[real].max() >= logits.shape[-1]):
        raise InputError(f"targets hold ids outside [0, {logits.shape[-1]}) (use -100 for positions to ignore)")
    if not real.any():
        raise InputError("every target is ignored (-100): there is no loss to compute")
    losses = F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), ignore_index=IGNORE, reduction="none")
    losses = losses.view(targets.shape)  # [batch, pos] (or [batch])
    return losses if per_token else losses.sum() / real.sum()


def next_token_targets(model, logits, tokens, attention_mask) -> torch.Tensor:
    """targets[:, t] = tokens[:, t + 1]; -100 at the last position and around padding.  [batch, pos]."""
    if not model.config.causal or model.config.input == "patches":
        raise InputError(f"a {model.config.arch!r} model has no next token to predict: return_type='loss' needs targets=")
    if tokens is None:
        raise InputError("with start_at_layer the tokens are not known: return_type='loss' needs targets= "
                         "(targets[:, t] = the token expected at position t)")
    tokens = tokens[None] if tokens.dim() == 1 else tokens
    targets = torch.full_like(tokens, IGNORE)
    targets[:, :-1] = tokens[:, 1:]
    if attention_mask is not None:
        real = attention_mask[:, -tokens.shape[1]:].bool()  # [batch, pos] this call's columns
        targets[:, :-1][~(real[:, :-1] & real[:, 1:])] = IGNORE
    return targets
