"""Activation patching, batched: many (hook, index) cells patched in one forward pass.

Patching runs the model on a corrupted input while copying one activation -- a *cell*: a hook point and an
index into it, e.g. (layer 2's resid_pre, position 5) or (layer 1's z, position 3, head 0) -- from the run on a
clean input. With a metric ``m`` of the logits (e.g. a logit difference),

    effect(cell) = (m(patched) - m(corrupted)) / (m(clean) - m(corrupted))

is 1 where the copied activation alone restores the clean behaviour and 0 where it changes nothing.

Rows of a batch never interact (eval mode: no dropout, no batch statistics), so G cells are patched in
one forward over the corrupted batch repeated G times: copy g of the batch gets cell g's patch, and the
metric is read off each copy's logits. A layers x positions sweep of resid_pre on a 4-layer model at 64
positions is 256 cells: a handful of batched forwards instead of 256. And nothing before the first patched
block differs from the corrupted run, so a forward whose cells all sit in blocks >= l starts at block l from
the corrupted run's cached resid_pre[l] (``start_at_layer``): a layers x positions sweep computes about
(L + 1) / 2L of the blocks it would otherwise (bench/bench_lens.py measures both savings).
``cells_per_forward=1`` is the one-forward-per-cell loop, with the same values.

Every per-head activation can be patched by (layer, head) or by (layer, position, head): ``z``, ``q``,
``k``, ``v`` (per key/value head under grouped-query attention), ``pattern`` and ``scores`` (indexed by
the *query* position), and the optional ``result``, ``q_input``, ``k_input``, ``v_input``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.lens.cache import ModelInput, call_args, heads_per_block, n_blocks, run_with_cache, stack_module, stack_prefix
from glassformer.model.hook_aliases import resolve_alias

Metric = Callable[[torch.Tensor], torch.Tensor]  # logits -> a scalar tensor
Cell = tuple[str, tuple]  # (hook name, index into the activation after its batch dimension)

MAX_TOKENS = 2048  # rows x positions per batched forward when cells_per_forward is not given (see patch_cells)
HEAD_FIRST = ("pattern", "scores")  # [batch, heads, q_pos, k_pos]; every other per-head hook is [batch, pos, heads, ...]
PER_HEAD = ("z", "q", "k", "v", "pattern", "scores", "result", "q_input", "k_input", "v_input")


@dataclass
class PatchResult:
    """The metric after patching each cell from the clean run into the corrupted one."""

    values: torch.Tensor  # [layers, positions], [layers, heads] or [layers, positions, heads]
    row_labels: list[str]  # "L0", "L1", ...
    col_labels: list[str]  # positions ("0", "1", ... or token strings) or heads ("H0", ...)
    clean: float  # m(clean logits)
    corrupted: float  # m(corrupted logits)
    what: str  # e.g. "resid_pre" or "attn.z"
    normalized: bool
    head_labels: list[str] | None = None  # the last axis of a [layers, positions, heads] result

    def plot(self, path: str | Path | None = None, *, title: str | None = None):
        """A heat map (rows: layers), saved to ``path`` if given; returns the matplotlib Figure."""
        if self.values.dim() != 2:
            raise InputError(f"plot() draws a [rows, columns] map; this result is {tuple(self.values.shape)}: "
                             "plot one head with PatchResult(values[:, :, h], ...) or sum over heads")
        from glassformer.viz.lens_plots import plot_heatmap

        label = "restored fraction of the metric" if self.normalized else "metric"
        return plot_heatmap(
            self.values, self.row_labels, self.col_labels, title=title or f"activation patching: {self.what}",
            colorbar_label=label, path=path, diverging=True,
        )


def logit_diff_metric(answer, wrong, *, pos: int | None = None) -> Metric:
    """m(logits) = mean_batch (logits[:, pos, answer] - logits[:, pos, wrong]); ids or [batch] ids; ``pos``
    defaults to the last position. A vision model's class logits [batch, n_classes] have no position axis:
    m = mean_batch (logits[:, answer] - logits[:, wrong]) over classes, and giving ``pos`` is an error."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(logits.shape[0])
        if logits.dim() == 2:  # [batch, n_classes]: a vision model's class logits
            if pos is not None:
                raise InputError(f"these logits are class logits [batch, n_classes] = {list(logits.shape)} (a vision "
                                 f"model): they have no position, so pos={pos!r} does not apply; leave it out")
            return (logits[rows, torch.as_tensor(answer)] - logits[rows, torch.as_tensor(wrong)]).mean()
        at = -1 if pos is None else pos
        return (logits[rows, at, torch.as_tensor(answer)] - logits[rows, at, torch.as_tensor(wrong)]).mean()

    return metric


# -- the engine -------------------------------------------------------------------------------------


def patch_cells(
    model: nn.Module, clean: ModelInput, corrupted: ModelInput, metric: Metric, cells: Sequence[Cell], *,
    cells_per_forward: int | None = None,
) -> tuple[torch.Tensor, float, float]:
    """The metric with each cell patched, ``(values [cells], m(clean), m(corrupted))``.

    A cell ``(name, index)`` copies ``clean_act[:, *index]`` into ``corrupted_act[:, *index]`` (index: ints,
    slices or index tensors after the batch dimension). ``cells_per_forward`` cells share one forward (default:
    as many as keep it within 2,048 tokens); 1 runs one forward per cell.

    Batching saves the per-forward overhead, which dominates small models (a 2-layer toy: 1.8x faster on one
    CPU thread, measured); a forward that is already compute-bound on a CPU (4 layers, d_model 128, 8 x 64
    tokens) gains nothing from it, and much larger batches lose (their activations leave the caches).
    On a GPU, raise ``cells_per_forward``: wide batches are what it is fast at."""
    names = list(dict.fromkeys(name for name, _ in cells))
    clean_logits, clean_cache = run_with_cache(model, clean, names=names)
    args, kwargs = call_args(corrupted)
    starts = [f"blocks.{l}.resid_pre" for l in range(len(model.blocks))] if _can_start_late(model) else []
    corrupted_logits, corrupted_cache = run_with_cache(model, corrupted, names=starts)  # where late forwards start
    if corrupted_logits.shape != clean_logits.shape:
        raise InputError(f"clean and corrupted inputs must have the same shape, got {tuple(clean_logits.shape)} "
                         f"and {tuple(corrupted_logits.shape)} logits")
    batch, n_tokens = corrupted_logits.shape[0], call_args(corrupted)[0][0].numel()
    per_forward = cells_per_forward or max(1, MAX_TOKENS // n_tokens)
    if not isinstance(per_forward, int) or per_forward < 1:
        raise InputError(f"cells_per_forward must be a positive int, got {cells_per_forward!r}")
    values = torch.empty(len(cells))
    for start in range(0, len(cells), per_forward):
        chunk = cells[start : start + per_forward]
        logits = _run_patched(model, args, kwargs, clean_cache, corrupted_cache, chunk, batch)  # [len(chunk) * batch, ...]
        for g in range(len(chunk)):
            values[start + g] = float(metric(logits[g * batch : (g + 1) * batch]))
    return values, float(metric(clean_logits)), float(metric(corrupted_logits))


def _can_start_late(model) -> bool:
    """Whether a forward may start at a block from a cached stream (``start_at_layer``; not Transformer-XL)."""
    return getattr(model, "blocks", None) is not None and not model.config.memory_len


def _first_block(name: str) -> int | None:
    """The main-stack block a hook name lies in (``blocks.3.attn.z`` -> 3); None outside the blocks."""
    match = re.match(r"blocks\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def _run_patched(model, args, kwargs, clean_cache, corrupted_cache, chunk: Sequence[Cell], batch: int) -> torch.Tensor:
    """One forward over the corrupted batch repeated once per cell, copy g patched at cell g; it starts at
    the first block any cell touches, from the corrupted run's stream there."""
    groups = len(chunk)
    by_name: dict[str, list[tuple[int, tuple]]] = {}
    for g, (name, index) in enumerate(chunk):
        by_name.setdefault(name, []).append((g, index))

    def make_hook(name: str):
        clean_act = clean_cache[name]  # [batch, ...]

        def hook(act: torch.Tensor, _point) -> torch.Tensor:
            if act.shape != (groups * batch, *clean_act.shape[1:]):
                raise InputError(f"patching {name!r}: the corrupted run's activation has shape "
                                 f"{tuple(act.shape[1:])} per row, the clean run's {tuple(clean_act.shape[1:])}")
            act = act.clone()
            view = act.view(groups, batch, *act.shape[1:])  # [groups, batch, ...]
            for g, index in by_name[name]:
                view[(g, slice(None), *index)] = clean_act[(slice(None), *index)].to(act.dtype)
            return act

        return hook

    rep_args = tuple(_repeat(a, groups) for a in args)
    rep_kwargs = {k: _repeat(v, groups) for k, v in kwargs.items()}
    blocks = [_first_block(resolve_alias(name)) for name in by_name]
    start = None if None in blocks else min(blocks)
    if start and f"blocks.{start}.resid_pre" in corrupted_cache:  # blocks before `start` are the corrupted run's
        rep_args = (_repeat(corrupted_cache[f"blocks.{start}.resid_pre"], groups), *rep_args[1:])
        rep_kwargs["start_at_layer"] = start
    with torch.no_grad(), model.hooks([(name, make_hook(name)) for name in by_name]):
        return model(*rep_args, **rep_kwargs)


def _repeat(x, groups: int):
    """A batch-first tensor repeated ``groups`` times along the batch; anything else unchanged."""
    if isinstance(x, torch.Tensor) and x.dim() >= 1:
        return x.repeat(groups, *([1] * (x.dim() - 1)))
    return x


# -- sweeps -----------------------------------------------------------------------------------------


def patch_layers_positions(
    model: nn.Module, clean: ModelInput, corrupted: ModelInput, metric: Metric, *,
    hook: str = "resid_pre", stack: str | None = None, normalize: bool = True, position_labels: list[str] | None = None,
    cells_per_forward: int | None = None,
) -> PatchResult:
    """Patch ``blocks.{l}.{hook}`` ([batch, pos, ...]: resid_pre, resid_mid, resid_post, attn_out,
    mlp_out, mlp.post, ...) at one position at a time: values [layers, positions]."""
    p = stack_prefix(model, stack)
    names = [f"{p}blocks.{l}.{hook}" for l in range(n_blocks(model, p))]
    n_pos = _n_positions(model, clean, p)
    cells = [(name, (pos,)) for name in names for pos in range(n_pos)]
    values, clean_value, corrupted_value = patch_cells(model, clean, corrupted, metric, cells, cells_per_forward=cells_per_forward)
    labels = position_labels if position_labels is not None else [str(i) for i in range(n_pos)]
    if len(labels) != n_pos:
        raise InputError(f"{len(labels)} position labels for {n_pos} positions")
    return _result(values.view(len(names), n_pos), [f"L{l}" for l in range(len(names))], labels,
                   clean_value, corrupted_value, hook, normalize)


def patch_heads(
    model: nn.Module, clean: ModelInput, corrupted: ModelInput, metric: Metric, *,
    what: str = "z", positions: Iterable[int] | None = None, stack: str | None = None, cross: bool = False,
    normalize: bool = True, cells_per_forward: int | None = None,
) -> PatchResult:
    """Patch each head's ``what`` (z, q, k, v, pattern, scores, result, q_input, k_input, v_input; at
    ``positions``, default all) from clean into corrupted: values [layers, heads]."""
    names, n_heads = _head_hooks(model, what, stack, cross)
    pos = slice(None) if positions is None else torch.as_tensor(list(positions), dtype=torch.long)
    cells = [(name, _head_index(what, h, pos)) for name in names for h in range(n_heads)]
    values, clean_value, corrupted_value = _patch_heads(model, clean, corrupted, metric, cells, what, stack, cross, cells_per_forward)
    return _result(values.view(len(names), n_heads), [f"L{l}" for l in range(len(names))], [f"H{h}" for h in range(n_heads)],
                   clean_value, corrupted_value, names[0].split("blocks.", 1)[-1].split(".", 1)[-1], normalize)


def patch_heads_positions(
    model: nn.Module, clean: ModelInput, corrupted: ModelInput, metric: Metric, *,
    what: str = "z", stack: str | None = None, cross: bool = False, normalize: bool = True,
    position_labels: list[str] | None = None, cells_per_forward: int | None = None,
) -> PatchResult:
    """Patch every (layer, position, head) of ``what`` on its own: values [layers, positions, heads]
    (for ``pattern`` / ``scores`` the position is the query's)."""
    names, n_heads = _head_hooks(model, what, stack, cross)
    n_pos = _n_positions(model, clean, stack_prefix(model, stack))
    cells = [(name, _head_index(what, h, pos)) for name in names for pos in range(n_pos) for h in range(n_heads)]
    values, clean_value, corrupted_value = _patch_heads(model, clean, corrupted, metric, cells, what, stack, cross, cells_per_forward)
    labels = position_labels if position_labels is not None else [str(i) for i in range(n_pos)]
    if len(labels) != n_pos:
        raise InputError(f"{len(labels)} position labels for {n_pos} positions")
    result = _result(values.view(len(names), n_pos, n_heads), [f"L{l}" for l in range(len(names))], labels,
                     clean_value, corrupted_value, names[0].split("blocks.", 1)[-1].split(".", 1)[-1], normalize)
    result.head_labels = [f"H{h}" for h in range(n_heads)]
    return result


def _patch_heads(model, clean, corrupted, metric, cells, what: str, stack, cross: bool, cells_per_forward):
    """``patch_cells`` over the cells whose head exists: layers may have fewer heads than the widest
    (``ModelConfig.layer_n_heads``); the others are NaN. Values in the order of ``cells``."""
    kind, kv = "cross_attn" if cross else "attn", what in ("k", "v", "k_input", "v_input")
    heads = heads_per_block(model, stack_prefix(model, stack), kind, kv)
    real = [h < heads[int(name.split("blocks.", 1)[1].split(".", 1)[0])]
            for name, index in cells for h in [index[0] if what in HEAD_FIRST else index[1]]]
    if all(real):
        return patch_cells(model, clean, corrupted, metric, cells, cells_per_forward=cells_per_forward)
    found, clean_value, corrupted_value = patch_cells(model, clean, corrupted, metric, [c for c, r in zip(cells, real) if r],
                                                      cells_per_forward=cells_per_forward)
    values = found.new_full((len(cells),), float("nan"))
    values[torch.tensor(real)] = found
    return values, clean_value, corrupted_value


def _head_hooks(model, what: str, stack, cross: bool) -> tuple[list[str], int]:
    """The hook names of ``what`` in every block, and how many heads the widest has (kv heads for k, v, k_input,
    v_input)."""
    if what not in PER_HEAD:
        raise InputError(f"what must be one of {PER_HEAD}, got {what!r}")
    p = stack_prefix(model, stack)
    module = stack_module(model, p)
    if cross and module.blocks[0].cross_attn is None:
        raise InputError("cross=True needs the decoder of an encoder-decoder model")
    kind = "cross_attn" if cross else "attn"
    kv = what in ("k", "v", "k_input", "v_input")
    return [f"{p}blocks.{l}.{kind}.{what}" for l in range(len(module.blocks))], max(heads_per_block(model, p, kind, kv))


def _head_index(what: str, head: int, pos) -> tuple:
    return (head, pos) if what in HEAD_FIRST else (pos, head)


def _n_positions(model: nn.Module, inputs: ModelInput, prefix: str) -> int:
    """How many positions the stack reads: the tokens' (an encoder-decoder's encoder: the source's; a vision
    model: the class token and the patches)."""
    if model.config.input == "patches":
        return model.config.n_patches + 1
    args, kwargs = call_args(inputs)
    tokens = kwargs.get("src") if prefix == "encoder." else args[0]
    if not isinstance(tokens, torch.Tensor):
        raise InputError("patching the encoder needs the source: inputs {'tokens': ..., 'src': ...}")
    return tokens.shape[-1]


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
