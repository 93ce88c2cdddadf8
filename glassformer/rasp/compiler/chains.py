"""Stage 1b: chains of Maps become one node.  ``Map(f, Map(g, x))``, the inner Map read by nothing
else, is ``Map(f . g, x)``: one MLP computes it either way (the assignment stage would fuse them), and
a chain of thousands of Maps is then one node, compiled in the time of one, with no deep recursion
anywhere (Tracr's ``Map`` simplifies the same way when it is built)."""

from __future__ import annotations

from typing import Callable

from glassformer.rasp.compiler.graph import ElementWise, Graph


class _Chain:
    """``fns[-1](...fns[1](fns[0](x)))``, flat: composing a thousand functions does not nest calls."""

    def __init__(self, first: Callable, then: Callable, first_label: str):
        self.fns = (first.fns if isinstance(first, _Chain) else (first,)) + (then,)
        self.labels = (first.labels if isinstance(first, _Chain) else ()) + (first_label,)  # the Maps composed in

    def __call__(self, x):
        for fn in self.fns:
            x = fn(x)
        return x


def composed(fn: Callable) -> tuple[str, ...]:
    """The labels of the Maps composed into ``fn`` (empty if none)."""
    return getattr(fn, "labels", ())


def compose_chains(graph: Graph) -> None:
    """Compose every Map read only by another Map into it (in place), inputs first."""
    changed = False
    for node in graph.nodes:  # inputs first, so a chain collapses from its start
        op = node.op
        if not isinstance(op, ElementWise) or len(op.args) != 1:
            continue
        inner = op.args[0]
        if (not isinstance(inner.op, ElementWise) or len(inner.op.args) != 1 or inner is graph.output
                or len(graph.consumers[id(inner)]) != 1):
            continue
        f, g = op.fn, inner.op.fn
        linear = None
        if op.linear is not None and inner.op.linear is not None:  # a * (c + b x) + d = (d + a c) + a b x
            linear = (op.linear[0] + op.linear[1] * inner.op.linear[0], op.linear[1] * inner.op.linear[1])
        node.op = ElementWise(_Chain(g, f, inner.label), inner.op.args, linear)
        graph.consumers[id(inner.op.args[0])].append(node)
        changed = True
    if changed:
        graph.refresh()
