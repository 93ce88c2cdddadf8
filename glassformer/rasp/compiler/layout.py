"""Stage 5: the residual stream's layout, one labelled dimension per value.

    bos                      1 at the BOS position only
    tokens=a, tokens=b, ...  a categorical SOp: one dimension per value (None is the zero vector)
    frac_prevs               a numerical SOp: one dimension holding the number
    1/(length+1)             what a SelectorWidth head writes before its MLP decodes it

Only *materialized* nodes that some block reads (or the output) get dimensions: Maps folded into
heads and element-wise steps fused into one MLP never occupy the residual stream.

**Reuse** (``reuse=True``): a SOp's dimensions are needed from the sublayer that writes it until the last
sublayer that reads it (sublayer 2l is layer l's attention, 2l + 1 its MLP; the embedding -1).  After that
an MLP erases them (``erase_spec``: hidden units computing -x, exactly: ReLU(x) - ReLU(-x) = x) and a SOp
written later takes them, first fit.  A dimension then has several labels, each for a range of layers:
``tokens=a → sort=3 (from layer 2)``; ``owner`` still gives every SOp its own contiguous [start, stop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from glassformer.rasp.compiler.allocate import Allocation
from glassformer.rasp.compiler.assign import Assignment
from glassformer.rasp.compiler.graph import Embedded
from glassformer.rasp.compiler.mlp import BOS, MLPSpec, cat_key, num_key


@dataclass
class Layout:
    keys: list[tuple]  # residual keys in order (with reuse: each dimension's first)
    labels: list[str]  # one human-readable label per dimension
    index: dict[tuple, int]  # residual key -> its dimension
    owner: dict[str, tuple[int, int]]  # node label -> [start, stop) of its dimensions
    erase: list[tuple[int, str]] = field(default_factory=list)  # (layer, node): an MLP erases the node's dims there

    @property
    def d_model(self) -> int:
        return len(self.labels)


def format_value(v: Any) -> str:
    return v if isinstance(v, str) else repr(v)


def key_label(key: tuple) -> str:
    if key == BOS:
        return "bos"
    return key[0] if len(key) == 1 else f"{key[0]}={format_value(key[1])}"


def _node_keys(plan: Assignment, node) -> list[tuple]:
    if node.is_numerical:
        return [num_key(node)]
    return [cat_key(node, v) for v in plan.values[node.label].non_none]


def build_layout(plan: Assignment, alloc: Allocation | None = None, reuse: bool = False) -> Layout:
    """Dimensions for every node some block reads (and the output); with ``reuse``, dimensions are shared
    by SOps whose lifetimes do not overlap (``alloc`` gives the sublayers)."""
    read = {d.label for n in plan.materialized for d in plan.deps(n)} | {plan.graph.output.label}
    nodes = [n for n in plan.materialized if n.label in read]
    if not reuse:
        keys: list[tuple] = [BOS]
        owner = {}
        for node in nodes:
            start = len(keys)
            keys.extend(_node_keys(plan, node))
            owner[node.label] = (start, len(keys))
        return Layout(keys, [key_label(k) for k in keys], {k: i for i, k in enumerate(keys)}, owner)
    return _reused(plan, alloc, nodes)


def _reused(plan: Assignment, alloc: Allocation, nodes: list) -> Layout:
    written = {n.label: alloc.sublayer[n.label] for n in nodes}
    last_read: dict[str, float] = {plan.graph.output.label: math.inf}
    for reader in plan.materialized:
        for d in plan.deps(reader):
            last_read[d.label] = max(last_read.get(d.label, -1), alloc.sublayer[reader.label])
    # erased by the MLP of the last reader's layer: right after it (a reading MLP erases as it reads)
    erased_at = {label: r if r == math.inf or r % 2 == 1 else r + 1 for label, r in last_read.items()}
    dims: list[list[tuple[str, tuple]]] = [[("bos", BOS)]]  # per dimension: its (owner, key)s in order
    free_after: list[float] = [math.inf]  # per dimension: the sublayer after which it may be reused
    owner, index, reused = {}, {BOS: 0}, set()
    for node in sorted(nodes, key=lambda n: written[n.label]):  # stable: topological within a sublayer
        keys, w = _node_keys(plan, node), written[node.label]
        start = next((s for s in range(1, len(dims) - len(keys) + 1)
                      if all(f < w for f in free_after[s:s + len(keys)])), len(dims))
        for j, key in enumerate(keys):
            if start + j == len(dims):
                dims.append([])
                free_after.append(-math.inf)
            if dims[start + j]:
                reused.add(dims[start + j][-1][0])
            dims[start + j].append((node.label, key))
            free_after[start + j] = erased_at[node.label]
            index[key] = start + j
        owner[node.label] = (start, start + len(keys))
    labels = [" → ".join(key_label(k) + (f" (from layer {written[o] // 2})" if i else "")
                             for i, (o, k) in enumerate(owners)) for owners in dims]
    erase = sorted((int(erased_at[label]) // 2, label) for label in reused)
    return Layout([owners[0][1] for owners in dims], labels, index, owner, erase)


def erase_spec(plan: Assignment, layout: Layout, label: str) -> MLPSpec:
    """Hidden units that set a node's dimensions to exactly 0: -x from ReLU(x) (and +ReLU(-x) where x can be
    negative, i.e. anything but an embedded one-hot, which is exactly 0 or 1)."""
    node = next(n for n in plan.materialized if n.label == label)
    exact_one_hot = isinstance(node.op, Embedded) and not node.is_numerical
    spec = MLPSpec(f"{label} (erase: its dimensions are reused)")
    for key in _node_keys(plan, node):
        spec.unit({key: 1.0}, 0.0, {key: -1.0})
        if not exact_one_hot:
            spec.unit({key: -1.0}, 0.0, {key: 1.0})
    return spec
