"""Head detectors: how well each attention head's pattern matches a reference pattern.

Everything rests on one score. For an attention pattern ``A[q, k]`` (each row sums to 1) and a
reference ``R[q, k]`` (True / a weight where query ``q`` *should* attend to key ``k``):

    mass:  score = mean_q  sum_{k : R[q, k] > 0} A[q, k]            the share of attention on the right keys
    tv:    score = mean_q  (1 - 1/2 sum_k |A[q, k] - R~[q, k]|)      R~ = R with rows normalised to sum 1

averaged over the queries whose reference row is not empty. Both lie in [0, 1]; ``mass`` is 1 when
the head attends only where the reference allows, ``tv`` only when it also spreads its attention the
same way (1 - total-variation distance). The classic detectors are references built from the tokens,
so no tokenizer is needed:

    previous_token   R[q, q-1]                                  (q >= 1)
    first_token      R[q, 0]                                    (q >= 1; attention "sinks")
    duplicate_token  R[q, k] = tokens[k] == tokens[q], k < q    (earlier copies of the same token)
    induction        R[q, k] = tokens[k-1] == tokens[q], k <= q (the token after an earlier copy)
"""

from __future__ import annotations

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.lens.cache import ModelInput, n_blocks, run_with_cache, stack_heads, stack_prefix, tokens_of

METHODS = ("mass", "tv")
DETECTORS = ("previous_token", "first_token", "duplicate_token", "induction")
POSITIONAL_DETECTORS = ("previous_token", "first_token")  # need positions only (work on images too)


def pattern_score(
    pattern: torch.Tensor, reference: torch.Tensor, *, method: str = "mass", query_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Score attention patterns against a reference ``[query, key]`` pattern (see the module docstring).

    Args:
        pattern:    [..., q_pos, k_pos] attention probabilities, e.g. one head [q, k], a layer's heads
                    [heads, q, k], a batch [batch, heads, q, k] or a whole model [layers, heads, q, k].
        reference:  [q_pos, k_pos], or anything broadcastable to ``pattern`` (e.g. [batch, 1, q, k] for
                    token-dependent references): bool (True = should attend) or non-negative weights,
                    e.g. a compiled RASP selector's selection matrix.
        method:     "mass" (share of attention on the reference's keys) or "tv" (1 - total variation
                    distance to the reference's row-normalised distribution).
        query_mask: optional [q_pos] (or broadcastable [..., q_pos]) bool: only these queries count.

    Returns:
        One score in [0, 1] per leading index: shape ``broadcast(pattern, reference).shape[:-2]``
        (NaN where no query has a non-empty reference row).
    """
    if method not in METHODS:
        raise InputError(f"pattern_score: method must be one of {METHODS}, got {method!r}")
    pattern = torch.as_tensor(pattern).float()
    reference = torch.as_tensor(reference)
    if pattern.dim() < 2 or reference.dim() < 2:
        raise InputError(f"pattern and reference must be [..., q_pos, k_pos], got {tuple(pattern.shape)} and {tuple(reference.shape)}")
    if pattern.shape[-2:] != reference.shape[-2:]:
        raise InputError(f"pattern is [.., {pattern.shape[-2]}, {pattern.shape[-1]}] but reference is [.., {reference.shape[-2]}, {reference.shape[-1]}]")
    reference = reference.float().to(pattern.device)
    if (reference < 0).any():
        raise InputError("reference weights must be non-negative")
    row = reference.sum(-1)  # [..., q_pos]
    counted = row > 0
    if query_mask is not None:
        counted = counted & torch.as_tensor(query_mask, dtype=torch.bool, device=pattern.device)
    if method == "mass":
        per_query = (pattern * (reference > 0)).sum(-1)  # [..., q_pos]
    else:
        target = reference / row.clamp_min(1e-12)[..., None]  # rows sum to 1
        per_query = 1 - 0.5 * (pattern - target).abs().sum(-1)  # [..., q_pos]
    per_query, counted = torch.broadcast_tensors(per_query, counted)
    n = counted.sum(-1)  # [...]
    score = (per_query * counted).sum(-1) / n.clamp_min(1)
    return score.masked_fill(n == 0, float("nan"))


# -- references built from the tokens -------------------------------------------------------------


def previous_token_reference(n_pos: int) -> torch.Tensor:
    """R[q, q-1] = True: [n_pos, n_pos] bool."""
    return torch.eye(n_pos, dtype=torch.bool).roll(-1, dims=1).tril(-1)


def first_token_reference(n_pos: int) -> torch.Tensor:
    """R[q, 0] = True for q >= 1 (query 0 of a causal model can only attend to itself): [n_pos, n_pos]."""
    ref = torch.zeros(n_pos, n_pos, dtype=torch.bool)
    ref[1:, 0] = True
    return ref


def duplicate_token_reference(tokens: torch.Tensor) -> torch.Tensor:
    """R[b, q, k] = tokens[b, k] == tokens[b, q] and k < q: [batch, n_pos, n_pos] bool."""
    tokens = _as_batch(tokens)
    same = tokens[:, :, None] == tokens[:, None, :]  # [batch, q, k]
    return same & torch.ones_like(same[0]).tril(-1)


def induction_reference(tokens: torch.Tensor) -> torch.Tensor:
    """R[b, q, k] = tokens[b, k-1] == tokens[b, q] and 1 <= k <= q: [batch, n_pos, n_pos] bool.
    On a repeated sequence ``x x`` of length 2n this is the key ``q - n + 1``."""
    tokens = _as_batch(tokens)
    ref = torch.zeros(*tokens.shape, tokens.shape[1], dtype=torch.bool)  # [batch, q, k]
    ref[:, :, 1:] = tokens[:, :, None] == tokens[:, None, :-1]  # key k's previous token is the query's token
    return ref & torch.ones_like(ref[0]).tril(0)


def reference_for(detector: str, tokens: torch.Tensor) -> torch.Tensor:
    """The reference of a named detector for ``tokens`` [batch, pos]: [batch, pos, pos] bool."""
    tokens = _as_batch(tokens)
    batch, n = tokens.shape
    if detector == "previous_token":
        return previous_token_reference(n).expand(batch, n, n)
    if detector == "first_token":
        return first_token_reference(n).expand(batch, n, n)
    if detector == "duplicate_token":
        return duplicate_token_reference(tokens)
    if detector == "induction":
        return induction_reference(tokens)
    raise InputError(f"unknown detector {detector!r}; detectors: {', '.join(DETECTORS)}")


def repeated_random_tokens(
    d_vocab: int, seq_len: int, batch: int = 1, *, first: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``batch`` random sequences repeated once: [batch, 2 * seq_len] (+1 if ``first``, a fixed token put
    in front, e.g. a BOS). The second half can only be predicted by induction. Tokens within one half
    are distinct when ``seq_len <= d_vocab``, so each has exactly one earlier copy."""
    if seq_len > d_vocab:
        half = torch.randint(0, d_vocab, (batch, seq_len), generator=generator)
    else:
        half = torch.rand(batch, d_vocab, generator=generator).argsort(-1)[:, :seq_len]  # distinct tokens
    tokens = torch.cat([half, half], dim=1)  # [batch, 2 * seq_len]
    if first is not None:
        tokens = torch.cat([torch.full((batch, 1), first, dtype=torch.long), tokens], dim=1)
    return tokens


# -- running a model --------------------------------------------------------------------------------


def attention_patterns(model: nn.Module, inputs: ModelInput, *, stack: str | None = None, cross: bool = False) -> torch.Tensor:
    """Every block's attention pattern on ``inputs``: [layers, batch, heads, q_pos, k_pos].
    ``cross=True`` gives a decoder's cross-attention (keys are source positions). Where layers have different
    numbers of heads (``ModelConfig.layer_n_heads``), a layer's missing heads are NaN."""
    p = stack_prefix(model, stack)
    kind = "cross_attn" if cross else "attn"
    if cross and model.encoder is None:
        raise InputError("cross=True needs an encoder-decoder model")
    names = [f"{p}blocks.{l}.{kind}.pattern" for l in range(n_blocks(model, p))]
    _, cache = run_with_cache(model, inputs, names=names)
    return stack_heads([cache[n] for n in names], dim=1)


def detect_heads(
    model: nn.Module, inputs: ModelInput, *, stack: str | None = None, detectors=DETECTORS, method: str = "mass"
) -> dict[str, torch.Tensor]:
    """Score every self-attention head of a stack with the named detectors on ``inputs``.

    Returns ``{detector: scores [layers, heads]}``, each score averaged over the batch's sequences
    (sequences where the detector has nothing to score are skipped; NaN for heads a narrower layer lacks). For ``stack="encoder"`` of an
    encoder-decoder the tokens scored are ``inputs["src"]``. A vision model's inputs are images: the
    position detectors (previous token, first token = the class token) apply, the token detectors do not
    (asked for by default, they are left out; asked for by name, they are refused).
    """
    p = stack_prefix(model, stack)
    check_patterns_are_over_positions(model, p, "detect_heads")
    tokens = inputs["src"] if p == "encoder." else tokens_of(inputs)
    if tokens.is_floating_point():  # images: nothing to compare but positions
        asked = [d for d in detectors if d not in POSITIONAL_DETECTORS]
        if asked and tuple(detectors) != DETECTORS:
            raise InputError(f"detect_heads: {', '.join(asked)} compare tokens, but this model reads images; "
                             f"use {' or '.join(POSITIONAL_DETECTORS)}")
        detectors = [d for d in detectors if d in POSITIONAL_DETECTORS]
    elif tokens.shape[-1] > model.config.n_ctx and getattr(model.config, "memory_len", 0):
        raise InputError(f"detect_heads: an input of {tokens.shape[-1]} tokens is read by this Transformer-XL in segments of "
                         f"n_ctx = {model.config.n_ctx}, and the cache keeps only the last segment's pattern: score inputs of "
                         "at most n_ctx tokens")
    patterns = attention_patterns(model, inputs, stack=stack)  # [layers, batch, heads, q, k]
    batch, n = patterns.shape[1], patterns.shape[-1]
    if not tokens.is_floating_point():
        tokens = _as_batch(tokens)
    scores = {}
    for name in detectors:
        source = torch.zeros(batch, n, dtype=torch.long) if name in POSITIONAL_DETECTORS else tokens
        reference = reference_for(name, source)[None, :, None]  # [1, batch, 1, q, k]
        per_sequence = pattern_score(patterns, reference, method=method)  # [layers, batch, heads]
        scores[name] = per_sequence.nanmean(1)  # [layers, heads]
    return scores


def check_patterns_are_over_positions(model: nn.Module, prefix: str, tool: str) -> None:
    """Refuse, with the attention's own reason, where a pattern's columns are not key positions (Linformer's
    projected slots): a [query, key position] reference, or a token-by-token view, does not apply there."""
    stack = model.encoder if prefix == "encoder." else model
    for layer, block in enumerate(stack.blocks):
        attn = block.attn
        if getattr(attn, "key_axis", "positions") != "positions":
            raise InputError(f"{tool}: layer {layer}'s attention ({attn.describe().title}) has a pattern over "
                             f"{attn.key_axis}, not key positions. {attn.pattern_text()}")


def _as_batch(tokens: torch.Tensor) -> torch.Tensor:
    tokens = torch.as_tensor(tokens)
    if tokens.dim() == 1:
        tokens = tokens[None]
    if tokens.dim() != 2:
        raise InputError(f"tokens must be [batch, pos] (or [pos]), got shape {tuple(tokens.shape)}")
    return tokens
