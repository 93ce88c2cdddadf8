"""Interventions: change activations during a forward pass and watch the output.

*Ablation* removes a component: its activation is replaced by zero (zero ablation) or by its mean
over a reference batch (mean ablation, which keeps the activation's typical offset):

    head h of block l:  z[l][:, p, h] <- 0  or  mean_batch z_ref[l][:, p, h]     (so its output z W_O[h] goes)
    MLP of block l:     mlp_out[l][:, p] <- 0  or  mean_batch mlp_out_ref[l][:, p]
    position p alone:   resid_pre[0][:, p] <- 0  or  mean            (the token and position embedding there)

for every position ``p`` in ``positions`` (all positions when None).

*Activation patching* (copy an activation from a clean run into a corrupted one) lives in
``patching.py``; its names are re-exported here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.lens.cache import ModelInput, call_args, n_blocks, run_with_cache, stack_module, stack_prefix
from glassformer.lens.patching import (  # noqa: F401  (re-exported: they lived here first)
    Metric,
    PatchResult,
    logit_diff_metric,
    patch_heads,
    patch_heads_positions,
    patch_layers_positions,
)

MODES = ("zero", "mean")


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
        _check(head, module.blocks[layer].attn.n_heads, "head", f" in layer {layer}")
        targets.setdefault(f"{p}blocks.{layer}.attn.z", []).append(head)
    for layer, head in _pairs(cross_heads, "cross_heads"):
        _check(layer, n, "layer")
        if module.blocks[layer].cross_attn is None:
            raise InputError("cross_heads needs the decoder of an encoder-decoder model")
        _check(head, module.blocks[layer].cross_attn.n_heads, "head", f" in layer {layer}")
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


def _pairs(pairs, what: str) -> list[tuple[int, int]]:
    out = []
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise InputError(f"{what} must be (layer, head) pairs, got {pair!r}")
        out.append((int(pair[0]), int(pair[1])))
    return out


def _check(index: int, n: int, what: str, where: str = "") -> None:
    if not 0 <= index < n:
        raise InputError(f"{what} index {index} is out of range [0, {n}){where}")
