"""Is the decompiled program faithful to the model?  Two measures.

* **Match**: the program, run by the interpreter, against the model's own predictions on fresh inputs:
  per scored position (``match_position``) and per input with every scored position right
  (``match_sequence``).  An input on which the program raises counts as wrong everywhere.
* **Interchange-intervention accuracy (IIA)** of a step against a component: run the model on input
  ``a`` with the component's activation taken from input ``b``, and run the program on
  ``a`` with the step's SOp given its values on ``b`` (at the positions both have: ``b`` may be
  shorter or longer, so a swap can change what a length-dependent step sees); IIA is how often the two outputs agree, over the
  scored positions where either of them moved (``iia``; over every scored position: ``iia_all``).
  A step that says what the component computes predicts what the model does under the swap; a wrong
  mapping does not.  :func:`search_mapping` tries every head and MLP (and each layer's heads together) for
  every step and keeps the best.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from glassformer.rasp import language as L
from glassformer.rasp.decompile.fit import vkey
from glassformer.rasp.decompile.probe import Component, Example, Probe
from glassformer.rasp.errors import RaspEvaluationError
from glassformer.rasp.interpreter import Interpreter


def run_program(program: L.SOp, xs: list, overrides: dict | None = None) -> list | None:
    """``program`` on ``xs`` with some SOps' values fixed (``{expr: values}``); None if it raises."""
    interp = Interpreter(list(xs))
    for expr, values in (overrides or {}).items():
        interp.memo[(expr.id, False)] = list(values)
    try:
        return list(interp.run(program))
    except RaspEvaluationError:
        return None


def match(program: L.SOp, examples: Sequence[Example], outputs: Sequence[list]) -> dict:
    """Agreement of the program with the model's outputs on ``examples`` (see the module docstring)."""
    hits = total = seq_hits = failed = 0
    for ex, out in zip(examples, outputs):
        pred = run_program(program, ex.xs)
        failed += pred is None
        ok_all = True
        for p, s in enumerate(ex.scored):
            if not s:
                continue
            ok = pred is not None and vkey(pred[p]) == vkey(out[p])
            hits += ok
            total += 1
            ok_all &= ok
        seq_hits += ok_all
    return {"match_position": hits / max(total, 1), "match_sequence": seq_hits / max(len(examples), 1),
            "n_inputs": len(examples), "n_failed": failed}


def partners(examples: Sequence[Example], seed: int = 0) -> np.ndarray:
    """For each example, the source example of its swap: a random other one (of any length)."""
    n = len(examples)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    shift = np.random.default_rng(seed).integers(1, n, size=n)
    return (np.arange(n) + shift) % n


def _spliced(own: list, other: list) -> list:
    """``own`` with its first ``len(other)`` values taken from ``other`` (inputs may differ in length)."""
    m = min(len(own), len(other))
    return list(other[:m]) + list(own[m:])


def program_counterfactuals(program: L.SOp, expr: L.SOp, examples: Sequence[Example], src: np.ndarray) -> list:
    """The program's outputs on each example with ``expr`` given its values on the partner example (at the
    positions both inputs have)."""
    values = [run_program(expr, ex.xs) for ex in examples]
    out = []
    for e, (ex, j) in enumerate(zip(examples, src)):
        if values[e] is None or values[j] is None:
            out.append(None)
            continue
        out.append(run_program(program, ex.xs, {expr: _spliced(values[e], values[j])}))
    return out


def model_counterfactuals(probe: Probe, components: Sequence[Component], examples: Sequence[Example],
                          src: np.ndarray, caches: dict | None = None) -> list:
    """The model's outputs on each example with the components' activations from the partner example, at
    the model positions both inputs have."""
    return probe.run_patched(examples, components, src, caches)


def candidate_groups(probe: Probe, kept: Sequence[Component] = ()) -> list[tuple[Component, ...]]:
    """What a step may map to: every single head and MLP, and per layer its heads together and its kept
    heads together (a job shared by redundant heads moves only when they are swapped together)."""
    out: list[tuple[Component, ...]] = [(c,) for c in probe.components()]
    for layer in range(probe.n_layers):
        heads = tuple(c for c in probe.components() if c[0] == "head" and c[1] == layer)
        kept_heads = tuple(c for c in heads if c in kept)
        for group in (kept_heads, heads):
            if len(group) > 1 and group not in out:
                out.append(group)
    return out


def iia_score(examples: Sequence[Example], base_model: list, cf_model: list, base_prog: list, cf_prog: list) -> tuple:
    """``(iia, iia_all, moved)``: agreement of the counterfactual outputs where either moved, everywhere,
    and how many positions moved.  Inputs where the program is undefined under the swap (a categorical
    Aggregate whose selected values now differ) are left out."""
    moved_hits = moved = hits = total = 0
    for ex, bm, cm, bp, cp in zip(examples, base_model, cf_model, base_prog, cf_prog):
        if bp is None or cp is None:
            continue
        for p, s in enumerate(ex.scored):
            if not s:
                continue
            agree = vkey(cm[p]) == vkey(cp[p])
            hits += agree
            total += 1
            if vkey(cm[p]) != vkey(bm[p]) or vkey(cp[p]) != vkey(bp[p]):
                moved += 1
                moved_hits += agree
    return (moved_hits / moved if moved else None), hits / max(total, 1), moved


def search_mapping(probe: Probe, program: L.SOp, steps, examples: Sequence[Example],
                   candidates: Sequence[tuple[Component, ...]] | None = None, kept: Sequence[Component] = ()) -> dict:
    """For every step (not the read-out), the IIA against every candidate (a component or a group of
    heads); each step's ``best_component``, ``iia`` and ``iia_all`` come from the best one; on a tie, one
    holding the component the step was read from, then the smallest.  Returns the grid ``{step name: {candidate: (iia, iia_all, moved)}}``."""
    candidates = list(candidates if candidates is not None else candidate_groups(probe, kept))
    src = partners(examples)
    from glassformer.rasp.decompile.probe import hook_name

    names = {hook_name(c) for g in candidates for c in g}
    base_model, caches = probe.run(examples, names=lambda n: n in names)
    base_prog = [run_program(program, ex.xs) for ex in examples]
    model_cf = {g: model_counterfactuals(probe, g, examples, src, caches) for g in candidates}
    grid: dict = {}
    for step in steps:
        if step.kind == "output":
            continue
        prog_cf = program_counterfactuals(program, step.expr, examples, src)
        scores = {}
        for g in candidates:
            iia, iia_all, moved = iia_score(examples, base_model, model_cf[g], base_prog, prog_cf)
            scores[g] = (iia if iia is not None else 0.0, iia_all, moved)
        fitted = set(step.components)
        best = max(candidates, key=lambda g: (round(scores[g][0], 3), bool(fitted & set(g)), -len(g)))
        step.best_component = best
        step.iia, step.iia_all = round(scores[best][0], 4), round(scores[best][1], 4)
        grid[step.expr.name] = {g: scores[g] for g in candidates}
    return grid
