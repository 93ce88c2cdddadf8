"""Stage 4: layer allocation.  Each head and MLP goes to the earliest layer where its inputs exist.

A layer is an attention sublayer then an MLP sublayer; number them 2l and 2l + 1 (the embedding is
-1).  A block reading nodes written at sublayers s_1, s_2, ... runs at the first sublayer of its kind
after max(s_i).  This as-soon-as-possible schedule uses the fewest layers the dependency chain allows
(the longest path, counted in attention and MLP steps), and never leaves a layer entirely empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from glassformer.rasp.compiler.assign import Assignment


@dataclass
class Allocation:
    sublayer: dict[str, int]  # node label -> 2l (attention) / 2l+1 (MLP) / -1 (embedding)
    n_layers: int
    heads: list[list[str]] = field(default_factory=list)  # per layer, the Attend labels
    mlps: list[list[str]] = field(default_factory=list)  # per layer, the ElementWise labels

    def layer(self, label: str) -> int:
        return self.sublayer[label] // 2


def allocate(plan: Assignment) -> Allocation:
    sub: dict[str, int] = {}
    for node in plan.materialized:
        deps = plan.deps(node)
        after = max((sub[d.label] for d in deps), default=-1)
        if node.label in plan.heads:
            s = after + 1 if (after + 1) % 2 == 0 else after + 2
        elif node.label in plan.mlps:
            s = after + 1 if (after + 1) % 2 == 1 else after + 2
        else:
            s = -1
        sub[node.label] = s
    n_layers = max(1, max((s // 2 + 1 for s in sub.values() if s >= 0), default=1))
    alloc = Allocation(sub, n_layers, [[] for _ in range(n_layers)], [[] for _ in range(n_layers)])
    for node in plan.materialized:
        s = sub[node.label]
        if s >= 0:
            (alloc.heads if s % 2 == 0 else alloc.mlps)[s // 2].append(node.label)
    return alloc
