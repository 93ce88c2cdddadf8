"""Inputs for a compiled model: random sequences, their decoded outputs, and clean / corrupt pairs.

Every sequence has the model's full length ``max_len`` (so a batch needs no padding mask). Clean and
corrupt inputs are paired so that the program's outputs differ (somewhere) wherever the program allows
it: a method can only find what the metric sees change.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from glassformer.rasp.compiler.weights import BOS_ID, FIRST_TOKEN_ID, PAD_ID


def sample_tokens(compiled, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """About ``n`` inputs of every length 1..max_len (all of a length when there are few), padded:
    (tokens [n', max_len + 1] with BOS first and PAD after the end, mask [n', max_len + 1], 1 = real)."""
    V, N = len(compiled.vocab), compiled.max_len
    per_length = max(1, n // N)
    rows = []
    for length in range(1, N + 1):
        if V ** length <= per_length:
            ids = np.array(list(itertools.product(range(V), repeat=length)), dtype=np.int64)
        else:
            ids = rng.integers(0, V, size=(per_length, length))
        rows += [r for r in ids]
    tokens = torch.full((len(rows), N + 1), PAD_ID, dtype=torch.long)
    tokens[:, 0] = BOS_ID
    for i, r in enumerate(rows):
        tokens[i, 1: 1 + len(r)] = torch.from_numpy(r + FIRST_TOKEN_ID)
    return tokens, (tokens != PAD_ID).long()


def decode_ids(compiled, logits: torch.Tensor) -> torch.Tensor:
    """What the output decodes to, as comparable numbers: class ids (categorical) or the snapped value
    (numerical), for logits [..., pos, d_vocab_out] -> [..., pos]."""
    if not compiled.output.numerical:
        return logits.argmax(-1).double()
    raw = logits[..., 0].double()
    values = compiled.output.values
    if not values:
        return raw
    table = torch.tensor([float(v) for v in values], dtype=torch.float64)
    i = torch.searchsorted(table, raw.contiguous()).clamp(1, len(table) - 1)
    lo, hi = table[i - 1], table[i]
    return torch.where((raw - lo).abs() <= (hi - raw).abs(), lo, hi)


@torch.no_grad()
def clean_corrupt_pairs(compiled, n_pairs: int, rng: np.random.Generator, pool: int = 512):
    """``n_pairs`` pairs (clean, corrupt, clean_mask, corrupt_mask), each [n_pairs, max_len + 1], whose
    decoded outputs differ where the pool allows it. Clean inputs cycle through the distinct (length,
    output) groups of a pool of random inputs of every length, so rare outputs (balanced brackets) are
    represented; the corrupt input is drawn from another group, of any length (a program that reads the
    length, e.g. ``reverse``, only changes when the length does)."""
    tokens, mask = sample_tokens(compiled, pool, rng)
    logits = compiled.model(tokens.to(_device(compiled)), attention_mask=mask.to(_device(compiled))).float().cpu()
    out = decode_ids(compiled, logits).masked_fill(mask == 0, float("nan"))[:, 1:]  # [pool, max_len]
    lengths = mask.sum(1).tolist()
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(out.tolist()):
        groups.setdefault((lengths[i], tuple(str(v) for v in row)), []).append(i)
    keys = [k for k in groups]
    order = [keys[i] for i in rng.permutation(len(keys))]
    clean, corrupt = [], []
    for j in range(n_pairs):
        key = order[j % len(order)]
        members = groups[key]
        clean.append(members[rng.integers(len(members))])
        other = order[(j + 1 + int(rng.integers(max(1, len(order) - 1)))) % len(order)] if len(order) > 1 else key
        corrupt.append(groups[other][rng.integers(len(groups[other]))])
    return tokens[clean], tokens[corrupt], mask[clean], mask[corrupt]


def _device(compiled):
    return next(compiled.model.parameters()).device
