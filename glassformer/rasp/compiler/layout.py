"""Stage 5: the residual stream's layout, one labelled dimension per value.

    bos                      1 at the BOS position only
    tokens=a, tokens=b, ...  a categorical SOp: one dimension per value (None is the zero vector)
    frac_prevs               a numerical SOp: one dimension holding the number
    1/(length+1)             what a SelectorWidth head writes before its MLP decodes it

Only *materialized* nodes that some block reads (or the output) get dimensions: Maps folded into
heads and element-wise steps fused into one MLP never occupy the residual stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glassformer.rasp.compiler.assign import Assignment
from glassformer.rasp.compiler.mlp import BOS, cat_key


@dataclass
class Layout:
    keys: list[tuple]  # residual keys in order
    labels: list[str]  # the same, human-readable
    index: dict[tuple, int]
    owner: dict[str, tuple[int, int]]  # node label -> [start, stop) of its dimensions

    @property
    def d_model(self) -> int:
        return len(self.keys)


def format_value(v: Any) -> str:
    return v if isinstance(v, str) else repr(v)


def key_label(key: tuple) -> str:
    if key == BOS:
        return "bos"
    return key[0] if len(key) == 1 else f"{key[0]}={format_value(key[1])}"


def build_layout(plan: Assignment) -> Layout:
    read = {d.label for n in plan.materialized for d in plan.deps(n)} | {plan.graph.output.label}
    keys: list[tuple] = [BOS]
    owner = {}
    for node in plan.materialized:
        if node.label not in read:
            continue
        start = len(keys)
        if node.is_numerical:
            keys.append((node.label,))
        else:
            keys.extend(cat_key(node, v) for v in plan.values[node.label].non_none)
        owner[node.label] = (start, len(keys))
    return Layout(keys, [key_label(k) for k in keys], {k: i for i, k in enumerate(keys)}, owner)
