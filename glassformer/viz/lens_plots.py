"""Plots of lens results: heat maps, the logit-lens grid, attribution bars, head scores, curves.

Every function returns a :class:`matplotlib.figure.Figure` and, given ``path``, saves it there (the
suffix picks the format: .png, .svg, .pdf). Tensors are accepted on any device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from glassformer.errors import InputError


def show_token(token: str) -> str:
    """A token as a label: whitespace made visible, long tokens shortened."""
    token = {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(token, token)
    return token if len(token) <= 8 else token[:7] + "…"


def save(fig: Figure, path: str | Path | None, dpi: int = 110) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


def _numpy(x) -> np.ndarray:
    return torch.as_tensor(x).detach().float().cpu().numpy()


def plot_heatmap(
    values, row_labels: Sequence[str], col_labels: Sequence[str], *, title: str | None = None,
    colorbar_label: str = "", diverging: bool = False, annotate: bool | None = None,
    xlabel: str | None = None, ylabel: str | None = None, path: str | Path | None = None,
) -> Figure:
    """A [rows, cols] matrix as coloured cells (diverging: blue < 0 < red, centred on 0)."""
    data = _numpy(values)
    if data.ndim != 2 or data.shape != (len(row_labels), len(col_labels)):
        raise InputError(f"heat map values {data.shape} do not match {len(row_labels)} row and {len(col_labels)} column labels")
    rows, cols = data.shape
    fig = Figure(figsize=(min(1.0 + 0.42 * cols, 16), min(0.9 + 0.38 * rows, 12)))
    ax = fig.subplots()
    finite = data[np.isfinite(data)]
    if diverging:
        limit = max(float(np.abs(finite).max()) if finite.size else 1.0, 1e-9)  # symmetric around 0
        image = ax.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    else:
        image = ax.imshow(data, cmap="viridis", aspect="auto")
    ax.set_xticks(range(cols), [show_token(str(c)) for c in col_labels], fontsize=7, rotation=90 if cols > 12 else 0)
    ax.set_yticks(range(rows), list(row_labels), fontsize=7)
    if annotate is None:
        annotate = rows * cols <= 64
    if annotate:
        for i in range(rows):
            for j in range(cols):
                if np.isfinite(data[i, j]):
                    ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=6, color="black" if diverging else "white")
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label=colorbar_label)
    return save(fig, path)


def plot_logit_lens(
    top_probs, top_tokens: Sequence[Sequence[str]], layer_labels: Sequence[str], input_tokens: Sequence[str], *,
    title: str | None = None, path: str | Path | None = None,
) -> Figure:
    """The logit-lens grid for one sequence: cell (layer, pos) shows the lens's top token there, coloured
    by its probability. ``top_probs`` [layers, pos]; ``top_tokens[layer][pos]`` its string."""
    data = _numpy(top_probs)
    if data.shape != (len(layer_labels), len(input_tokens)):
        raise InputError(f"logit lens grid {data.shape} does not match {len(layer_labels)} layers x {len(input_tokens)} positions")
    rows, cols = data.shape
    fig = Figure(figsize=(min(1.4 + 0.5 * cols, 18), 0.9 + 0.42 * rows))
    ax = fig.subplots()
    image = ax.imshow(data, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(rows):
        for j in range(cols):
            ax.text(j, i, show_token(top_tokens[i][j]), ha="center", va="center", fontsize=7,
                    color="white" if data[i, j] > 0.55 else "black")
    ax.set_xticks(range(cols), [show_token(t) for t in input_tokens], fontsize=7, rotation=90 if cols > 16 else 0)
    ax.set_yticks(range(rows), list(layer_labels), fontsize=7)
    ax.set_xlabel("input position (the cell predicts the next token)", fontsize=8)
    ax.set_ylabel("residual stream read", fontsize=8)
    ax.set_title(title or "logit lens: top prediction after each layer", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="probability of the top token")
    return save(fig, path)


def plot_attribution(
    values, labels: Sequence[str], *, title: str | None = None, top: int | None = 20, xlabel: str = "direct effect on the logit",
    path: str | Path | None = None,
) -> Figure:
    """Horizontal bars, one per component (the ``top`` largest |values|, in model order)."""
    data = _numpy(values)
    if data.ndim != 1 or data.shape[0] != len(labels):
        raise InputError(f"attribution values {data.shape} do not match {len(labels)} labels")
    keep = np.arange(len(labels))
    if top is not None and len(labels) > top:
        keep = np.sort(np.argsort(-np.abs(data))[:top])
    fig = Figure(figsize=(6, 0.6 + 0.26 * len(keep)))
    ax = fig.subplots()
    ax.barh(range(len(keep)), data[keep], color=["#c0392b" if v > 0 else "#2c7fb8" for v in data[keep]])
    ax.set_yticks(range(len(keep)), [labels[i] for i in keep], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title or "direct logit attribution", fontsize=9)
    return save(fig, path)


def plot_head_scores(scores: Mapping[str, torch.Tensor], *, title: str | None = None, path: str | Path | None = None) -> Figure:
    """One [layers, heads] panel per detector (scores in [0, 1])."""
    if not scores:
        raise InputError("plot_head_scores needs at least one detector's scores")
    names = list(scores)
    n_layers, n_heads = _numpy(scores[names[0]]).shape
    fig = Figure(figsize=(0.8 + (0.5 * n_heads + 1.2) * len(names), 1.4 + 0.45 * n_layers), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    image = None
    for ax, name in zip(axes, names):
        data = _numpy(scores[name])
        image = ax.imshow(data, cmap="magma", vmin=0, vmax=1, aspect="auto")
        for i in range(n_layers):
            for j in range(n_heads):
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=6, color="white" if data[i, j] < 0.6 else "black")
        ax.set_xticks(range(n_heads), [f"H{h}" for h in range(n_heads)], fontsize=7)
        ax.set_yticks(range(n_layers), [f"L{l}" for l in range(n_layers)], fontsize=7)
        ax.set_title(name.replace("_", " "), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="score")
    return save(fig, path)


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str | None = None, xlabel: str = "step",
    ylabel: str = "", logx: bool = False, logy: bool = False, path: str | Path | None = None,
) -> Figure:
    """Line plots: ``{label: (xs, ys)}`` on one set of axes."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    for label, (xs, ys) in curves.items():
        ax.plot(list(xs), list(ys), label=label, linewidth=1.4)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return save(fig, path)
