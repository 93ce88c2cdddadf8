"""The decompiler as a circuit method: ``rasp.decompile`` reads the model back as a RASP program, and the
heads and MLPs its steps are read from are the circuit it claims (nodes; it names no edges).

    claimed     = every component some step of the decompiled program names (``step.components``), and every
                  component its causal pruning kept (``result.kept``: needed, whether read or left opaque)
    score(node) = 1 + e(node)  if claimed,  e(node)  otherwise

where e is the decompiler's own mean-ablation effect of the node (the share of outputs that change when it
is replaced by its mean; in [0, 1]): the claimed nodes rank first, the rest by how much the output needs them.

Cost: decompiling fits and checks a program, which takes far longer than one patching sweep, so the suite runs
a capped decompile (``N_INPUTS`` inputs to prune and read, ``N_MATCH`` to measure the program's match,
``N_PAIRS`` pairs for its IIA search; ``rasp.decompile``'s defaults are 1000 / 1000 / 200). A model the
decompiler refuses claims nothing and scores 0 everywhere; the reason goes into the row's ``note``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from glassformer.errors import GlassformerError

if TYPE_CHECKING:  # methods.py imports this module to register the method
    from glassformer.circuits.methods import Context, Scores

N_INPUTS, N_MATCH, N_PAIRS = 200, 100, 20


def node_name(component) -> str:
    """The decompiler's ("head", layer, h) / ("mlp", layer, 0) -> the graph's 'a{layer}.{h}' / 'm{layer}'."""
    kind, layer, h = component
    return f"a{layer}.{h}" if kind == "head" else f"m{layer}"


def _flatten(components) -> list:
    """A step names components, or groups of them (a value several heads compute together)."""
    out = []
    for c in components:
        out += _flatten(c) if c and isinstance(c[0], tuple) else [c]
    return out


def decompiler_method(ctx: Context) -> Scores:
    from glassformer.circuits.methods import Scores
    from glassformer.rasp import decompile  # imported on use: it pulls in the RASP compiler and trainer

    nodes = list(ctx.graph.nodes)
    try:
        result = decompile(ctx.compiled, n_inputs=N_INPUTS, n_match=N_MATCH, n_pairs=N_PAIRS, seed=0)
    except GlassformerError as e:  # the decompiler's own refusal: nothing claimed
        return Scores("nodes", nodes, np.zeros(len(nodes)), claimed=set(), note=f"decompile refused: {e}")
    claimed = {node_name(c) for step in result.steps for c in _flatten(step.components)}
    claimed |= {node_name(c) for c in result.kept}  # kept by its causal pruning, read or left opaque (e.g. a
    # SelectorWidth's MLP, which the width step reads through the head's output)
    effect = {node_name(c): float(e) for c, e in result.effects.items()}
    scores = np.array([effect.get(n, 0.0) + (1.0 if n in claimed else 0.0) for n in nodes])
    note = f"match {result.match_position:.3f} per position, {len(result.steps)} steps"
    return Scores("nodes", nodes, scores, claimed=claimed & set(nodes), note=note)
