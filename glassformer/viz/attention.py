"""Attention maps as pictures: one panel per head, queries down the side, keys along the top.

Panel (layer l, head h) shows pattern[l, h, q, k] = how much query position q attends to key
position k (each row sums to 1). Uses matplotlib's object API (no pyplot), so it works headless
and never changes the global backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from matplotlib.figure import Figure

from glassformer.errors import InputError


def plot_attention(
    patterns: torch.Tensor,
    tokens: Sequence[str],
    key_tokens: Sequence[str] | None = None,
    *,
    layer_names: Sequence[str] | None = None,
    title: str | None = None,
    path: str | Path | None = None,
    panel_size: float = 2.6,
) -> Figure:
    """Draw attention patterns, one head per panel, and optionally save them (PNG, SVG, PDF ...).

    patterns:   [layers, heads, q_pos, k_pos] or [heads, q_pos, k_pos], for one sequence
    tokens:     labels of the query positions (and of the keys too, unless ``key_tokens`` is given:
                cross-attention has different keys)
    layer_names: a row label per layer (default ``layer 0``, ``layer 1``, ...)
    """
    patterns = torch.as_tensor(patterns).detach().float().cpu()
    if patterns.ndim == 3:
        patterns = patterns[None]  # [1, heads, q_pos, k_pos]
    if patterns.ndim != 4:
        raise InputError(f"patterns must be [layers, heads, q_pos, k_pos] or [heads, q_pos, k_pos], got {tuple(patterns.shape)}")
    n_layers, n_heads, q_pos, k_pos = patterns.shape
    key_tokens = list(tokens if key_tokens is None else key_tokens)
    if len(tokens) != q_pos or len(key_tokens) != k_pos:
        raise InputError(
            f"{len(tokens)} query labels and {len(key_tokens)} key labels for a [{q_pos} x {k_pos}] pattern"
        )
    layer_names = list(layer_names) if layer_names is not None else [f"layer {l}" for l in range(n_layers)]

    fig = Figure(figsize=(panel_size * n_heads + 0.8, panel_size * n_layers + (0.6 if title else 0.2)), layout="constrained")
    axes = fig.subplots(n_layers, n_heads, squeeze=False)
    image = None
    for l in range(n_layers):
        for h in range(n_heads):
            ax = axes[l][h]
            image = ax.imshow(patterns[l, h].numpy(), vmin=0.0, vmax=1.0, cmap="Blues", aspect="equal")
            ax.set_xticks(range(k_pos), [_label(t) for t in key_tokens], fontsize=7, rotation=90)
            ax.set_yticks(range(q_pos), [_label(t) for t in tokens], fontsize=7)
            ax.tick_params(length=0)
            ax.set_title(f"{layer_names[l]}, head {h}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def _label(token: str) -> str:
    """Make whitespace visible on the axes."""
    return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(token, token)
