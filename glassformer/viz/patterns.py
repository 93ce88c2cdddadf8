"""Attention patterns three ways: one head, every head of a layer, and token by token.

``pattern[q, k]`` is how much query position q attends to key position k (rows sum to 1). The
token-by-token view picks one query and shades every key token by the attention it receives, like
reading the sentence through that head's eyes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from glassformer.errors import InputError
from glassformer.viz.lens_plots import save, show_token


def _pattern(pattern, dims: int) -> np.ndarray:
    data = torch.as_tensor(pattern).detach().float().cpu().numpy()
    if data.ndim != dims:
        raise InputError(f"expected a {dims}-d attention pattern, got shape {data.shape}")
    return data


def plot_head(
    pattern, tokens: Sequence[str], key_tokens: Sequence[str] | None = None, *, title: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """One head's pattern [q_pos, k_pos] as a heat map with the tokens on both axes."""
    data = _pattern(pattern, 2)
    keys = list(tokens if key_tokens is None else key_tokens)
    if data.shape != (len(tokens), len(keys)):
        raise InputError(f"pattern {data.shape} does not match {len(tokens)} query and {len(keys)} key tokens")
    size = min(1.5 + 0.3 * max(data.shape), 10)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(data, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(keys)), [show_token(t) for t in keys], fontsize=7, rotation=90)
    ax.set_yticks(range(len(tokens)), [show_token(t) for t in tokens], fontsize=7)
    ax.set_xlabel("key (attended to)", fontsize=8)
    ax.set_ylabel("query (attending)", fontsize=8)
    ax.set_title(title or "attention pattern", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="attention")
    return save(fig, path)


def plot_layer(
    patterns, tokens: Sequence[str], key_tokens: Sequence[str] | None = None, *, layer: int | str = 0,
    title: str | None = None, path: str | Path | None = None, panel_size: float = 2.4,
) -> Figure:
    """Every head of one layer side by side: ``patterns`` [heads, q_pos, k_pos]."""
    data = _pattern(patterns, 3)
    n_heads, q, k = data.shape
    keys = list(tokens if key_tokens is None else key_tokens)
    if (q, k) != (len(tokens), len(keys)):
        raise InputError(f"patterns [{q} x {k}] do not match {len(tokens)} query and {len(keys)} key tokens")
    fig = Figure(figsize=(panel_size * n_heads + 0.8, panel_size + 0.6), layout="constrained")
    axes = fig.subplots(1, n_heads, squeeze=False)[0]
    image = None
    show_labels = max(q, k) <= 24
    for h, ax in enumerate(axes):
        image = ax.imshow(data[h], cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"L{layer} H{h}", fontsize=8)
        if show_labels:
            ax.set_xticks(range(k), [show_token(t) for t in keys], fontsize=6, rotation=90)
            ax.set_yticks(range(q), [show_token(t) for t in tokens] if h == 0 else [], fontsize=6)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        ax.tick_params(length=0)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.7, label="attention")
    return save(fig, path)


def plot_token_attention(
    pattern, tokens: Sequence[str], query: int, *, key_tokens: Sequence[str] | None = None, title: str | None = None,
    per_line: int = 24, path: str | Path | None = None,
) -> Figure:
    """Token by token: the key tokens laid out as text, each shaded by the attention query ``query``
    pays it (``pattern`` [q_pos, k_pos] of one head); the query token is outlined."""
    data = _pattern(pattern, 2)
    keys = list(tokens if key_tokens is None else key_tokens)
    if not -data.shape[0] <= query < data.shape[0]:
        raise InputError(f"query {query} out of range for {data.shape[0]} query positions")
    weights = data[query]  # [k_pos]
    if len(keys) != weights.shape[0]:
        raise InputError(f"{len(keys)} key tokens for a pattern with {weights.shape[0]} keys")
    query = query % data.shape[0]
    lines = (len(keys) + per_line - 1) // per_line
    fig = Figure(figsize=(min(0.45 * min(per_line, len(keys)) + 0.4, 12), 0.5 + 0.45 * lines))
    ax = fig.subplots()
    ax.set_xlim(-0.5, min(per_line, len(keys)) - 0.5)
    ax.set_ylim(lines - 0.5, -0.5)
    ax.axis("off")
    cmap = colormaps["Blues"]
    for i, (tok, w) in enumerate(zip(keys, weights)):
        x, y = i % per_line, i // per_line
        edge = "#d35400" if key_tokens is None and i == query else "none"  # outline the query itself
        ax.add_patch(Rectangle((x - 0.45, y - 0.4), 0.9, 0.8, facecolor=cmap(float(w)), edgecolor=edge, linewidth=1.5))
        ax.text(x, y, show_token(tok), ha="center", va="center", fontsize=7, color="white" if w > 0.5 else "black")
    ax.set_title(title or f"attention from query {query} ({show_token(tokens[query])})", fontsize=9)
    return save(fig, path)
