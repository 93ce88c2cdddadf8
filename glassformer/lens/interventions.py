"""Interventions: change activations during a forward pass and watch the output.

*Ablation* removes a component: its activation is replaced by zero (zero ablation) or by its mean
over a reference batch (mean ablation, which keeps the activation's typical offset):

    head h of block l:  z[l][:, p, h] <- 0  or  mean_batch z_ref[l][:, p, h]     (so its output z W_O[h] goes)
    MLP of block l:     mlp_out[l][:, p] <- 0  or  mean_batch mlp_out_ref[l][:, p]
    position p alone:   resid_pre[0][:, p] <- 0  or  mean            (the token and position embedding there)

for every position ``p`` in ``positions`` (all positions when None).

*Activation patching* runs the model on a corrupted input while copying one activation from the run
on a clean input. With a metric ``m`` of the logits (e.g. a logit difference),

    effect = (m(patched) - m(corrupted)) / (m(clean) - m(corrupted))

is 1 where the copied activation alone restores the clean behaviour and 0 where it changes nothing.
Patching every layer x position (of the residual stream) or every layer x head (of ``z``) maps where
the information that decides the answer lives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.lens.cache import ModelInput, call_args, n_blocks, run_with_cache, stack_module, stack_prefix

MODES = ("zero", "mean")
Metric = Callable[[torch.Tensor], torch.Tensor]  # logits -> a scalar tensor


# -- ablation ---------------------------------------------------------------------------------------


def ablation_hooks(
    model: nn.Module,
    *,
    heads: Iterable[tuple[int, int]] = (),
    mlps: Iterable[int] = (),
    cross_heads: Iterable[tuple[int, int]] = (),
    positions: Iterable[int] | None = None,
    mode: str = "zero",
    reference: ModelInput | None = None,
    stack: str | None = None,
) -> list[tuple[str, Callable]]:
    """The ``(hook name, fn)`` pairs that ablate the given heads ``(layer, head)``, MLPs (layer indices)
    and cross-attention heads at ``positions`` (see the module docstring). With no heads or MLPs,
    ``positions`` ablates the input embeddings there. ``mode="mean"`` needs ``reference`` inputs
    (same sequence length) whose batch mean replaces the activation."""
    if mode not in MODES:
        raise InputError(f"ablation mode must be one of {MODES}, got {mode!r}")
    if mode == "mean" and reference is None:
        raise InputError("mean ablation needs reference= inputs to average over")
    p = stack_prefix(model, stack)
    module, n = stack_module(model, p), n_blocks(model, p)
    targets: dict[str, list[int | None]] = {}  # hook name -> head indices (None = the whole activation)
    for layer, head in _pairs(heads, "heads"):
        _check(layer, n, "layer")
        _check(head, model.config.n_heads, "head")
        targets.setdefault(f"{p}blocks.{layer}.attn.z", []).append(head)
    for layer, head in _pairs(cross_heads, "cross_heads"):
        _check(layer, n, "layer")
        _check(head, model.config.n_heads, "head")
        if module.blocks[layer].cross_attn is None:
            raise InputError("cross_heads needs the decoder of an encoder-decoder model")
        targets.setdefault(f"{p}blocks.{layer}.cross_attn.z", []).append(head)
    for layer in mlps:
        _check(layer, n, "layer")
        if module.blocks[layer].mlp is None:
            raise InputError(f"block {layer} has no MLP (attention-only model)")
        targets.setdefault(f"{p}blocks.{layer}.mlp_out", []).append(None)
    if not targets:
        if positions is None:
            raise InputError("nothing to ablate: give heads=, mlps=, cross_heads= or positions=")
        targets[f"{p}blocks.0.resid_pre"] = [None]
    means = {}
    if mode == "mean":
        _, cache = run_with_cache(model, reference, names=list(targets))
        means = {name: cache[name].mean(0) for name in targets}  # [pos, ...] batch mean
    pos_index = None if positions is None else torch.as_tensor(list(positions), dtype=torch.long)

    def make_hook(name: str, head_indices: list[int | None]):
        def hook(act: torch.Tensor, _point) -> torch.Tensor:
            act = act.clone()
            pos = slice(None) if pos_index is None else pos_index
            if pos_index is not None and (pos_index.max() >= act.shape[1] or pos_index.min() < -act.shape[1]):
                raise InputError(f"ablation position out of range for a sequence of {act.shape[1]}")
            for h in head_indices:
                where = (slice(None), pos) if h is None else (slice(None), pos, h)
                if mode == "zero":
                    act[where] = 0
                else:
                    mean = means[name]
                    if mean.shape[0] != act.shape[1]:
                        raise InputError(f"mean ablation: reference has {mean.shape[0]} positions, the input {act.shape[1]}")
                    act[where] = (mean[pos] if h is None else mean[pos, h]).to(act.dtype)
            return act

        return hook

    return [(name, make_hook(name, idx)) for name, idx in targets.items()]


@contextlib.contextmanager
def ablate(model: nn.Module, **what) -> Iterator[None]:
    """``with ablate(model, heads=[(1, 0)], mode="mean", reference=tokens): model(tokens)`` -- the
    arguments are those of :func:`ablation_hooks`; hooks are removed on exit."""
    with model.hooks(ablation_hooks(model, **what)):
        yield


def run_ablated(model: nn.Module, inputs: ModelInput, **what) -> torch.Tensor:
    """The logits of ``model`` on ``inputs`` with the components in ``what`` ablated."""
    args, kwargs = call_args(inputs)
    with torch.no_grad(), ablate(model, **what):
        return model(*args, **kwargs)


# -- activation patching ----------------------------------------------------------------------------


@dataclass
class PatchResult:
    """The metric after patching each (row, column) activation from the clean run into the corrupted one."""

    values: torch.Tensor  # [layers, positions] or [layers, heads]
    row_labels: list[str]  # "L0", "L1", ...
    col_labels: list[str]  # positions ("0", "1", ... or token strings) or heads ("H0", ...)
    clean: float  # m(clean logits)
    corrupted: float  # m(corrupted logits)
    what: str  # e.g. "resid_pre" or "z"
    normalized: bool

    def plot(self, path: str | Path | None = None, *, title: str | None = None):
        """A heat map (rows: layers), saved to ``path`` if given; returns the matplotlib Figure."""
        from glassformer.viz.lens_plots import plot_heatmap

        label = "restored fraction of the metric" if self.normalized else "metric"
        return plot_heatmap(
            self.values, self.row_labels, self.col_labels, title=title or f"activation patching: {self.what}",
            colorbar_label=label, path=path, diverging=True,
        )


def logit_diff_metric(answer, wrong, *, pos: int = -1) -> Metric:
    """m(logits) = mean_batch (logits[:, pos, answer] - logits[:, pos, wrong]); ids or [batch] ids."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(logits.shape[0])
        return (logits[rows, pos, torch.as_tensor(answer)] - logits[rows, pos, torch.as_tensor(wrong)]).mean()

    return metric


def patch_layers_positions(
    model: nn.Module, clean: ModelInput, corrupted: ModelInput, metric: Metric, *,
    hook: str = "resid_pre", stack: str | None = None, normalize: bool = True, position_labels: list[str] | None = None,
) -> PatchResult:
    """Patch ``blocks.{l}.{hook}`` ([batch, pos, d_model]: resid_pre, resid_mid, resid_post, attn_out,
    mlp_out) at one position at a time: values [layers, positions]."""
    p = stack_prefix(model, stack)
    names = [f"{p}blocks.{l}.{hook}" for l in range(n_blocks(model, p))]
    _, clean_cache, corrupted_value, clean_value = _baselines(model, clean, corrupted, metric, names)
    n_pos = clean_cache[names[0]].shape[1]
    values = torch.empty(len(names), n_pos)
    for l, name in enumerate(names):
        for pos in range(n_pos):
            values[l, pos] = _patched_metric(model, corrupted, metric, name, clean_cache[name], (slice(None), pos))
    labels = position_labels if position_labels is not None else [str(i) for i in range(n_pos)]
    if len(labels) != n_pos:
        raise InputError(f"{len(labels)} position labels for {n_pos} positions")
    return _result(values, [f"L{l}" for l in range(len(names))], labels, clean_value, corrupted_value, hook, normalize)


def patch_heads(
    model: nn.Module, clean: ModelInput, corrupted: ModelInput, metric: Metric, *,
    positions: Iterable[int] | None = None, stack: str | None = None, cross: bool = False, normalize: bool = True,
) -> PatchResult:
    """Patch each head's ``z`` (at ``positions``, default all) from clean into corrupted: values [layers, heads]."""
    p = stack_prefix(model, stack)
    kind = "cross_attn" if cross else "attn"
    names = [f"{p}blocks.{l}.{kind}.z" for l in range(n_blocks(model, p))]
    _, clean_cache, corrupted_value, clean_value = _baselines(model, clean, corrupted, metric, names)
    pos = slice(None) if positions is None else torch.as_tensor(list(positions), dtype=torch.long)
    n_heads = model.config.n_heads
    values = torch.empty(len(names), n_heads)
    for l, name in enumerate(names):
        for h in range(n_heads):
            values[l, h] = _patched_metric(model, corrupted, metric, name, clean_cache[name], (slice(None), pos, h))
    return _result(values, [f"L{l}" for l in range(len(names))], [f"H{h}" for h in range(n_heads)],
                   clean_value, corrupted_value, f"{kind}.z", normalize)


def _baselines(model, clean, corrupted, metric, names):
    clean_logits, clean_cache = run_with_cache(model, clean, names=names)
    args, kwargs = call_args(corrupted)
    with torch.no_grad():
        corrupted_logits = model(*args, **kwargs)
    if corrupted_logits.shape != clean_logits.shape:
        raise InputError(f"clean and corrupted inputs must have the same shape, got {tuple(clean_logits.shape)} "
                         f"and {tuple(corrupted_logits.shape)} logits")
    return clean_logits, clean_cache, float(metric(corrupted_logits)), float(metric(clean_logits))


def _patched_metric(model, corrupted, metric, name, clean_act, where) -> float:
    def patch(act, _point):
        act = act.clone()
        act[where] = clean_act[where]
        return act

    args, kwargs = call_args(corrupted)
    with torch.no_grad(), model.hooks({name: patch}):
        return float(metric(model(*args, **kwargs)))


def _result(values, rows, cols, clean_value, corrupted_value, what, normalize) -> PatchResult:
    if normalize:
        gap = clean_value - corrupted_value
        if abs(gap) < 1e-6:
            raise InputError(
                f"the metric is the same on clean and corrupted inputs ({clean_value:.4g}): patching cannot "
                "separate them; choose inputs that change the answer, or normalize=False"
            )
        values = (values - corrupted_value) / gap
    return PatchResult(values, rows, cols, clean_value, corrupted_value, what, normalize)


def _pairs(pairs, what: str) -> list[tuple[int, int]]:
    out = []
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise InputError(f"{what} must be (layer, head) pairs, got {pair!r}")
        out.append((int(pair[0]), int(pair[1])))
    return out


def _check(index: int, n: int, what: str) -> None:
    if not 0 <= index < n:
        raise InputError(f"{what} index {index} is out of range [0, {n})")
