"""Decompile: read a transformer back as a RASP program, and check it by intervention.

    from glassformer import rasp
    compiled = rasp.compile(rasp.library.reverse(), vocab="abcd", max_len=8)
    result = rasp.decompile(compiled)                    # a compiled model: its own input layout
    result = rasp.decompile(model, task)                 # a trained model and the task it reads
    print(result.source)                                 # valid glassformer RASP; `program` is the output
    result.match_position, result.match_sequence         # agreement with the model on fresh inputs
    [(s.expr.name, s.components, s.iia) for s in result.steps]
    result.report()                                      # the JSON `glassformer decompile --report` writes

How: prune components causally, read each kept head as Select + Aggregate / SelectorWidth / mean,
each kept MLP as a lookup table, the unembedding as the output table (``core.py``); then measure match
and each step's interchange-intervention accuracy against the component the search maps it to
(``faithful.py``).  See docs/decompile.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from glassformer.errors import InputError
from glassformer.rasp import language as L
from glassformer.rasp.decompile import core, faithful
from glassformer.rasp.decompile.core import Step
from glassformer.rasp.decompile.probe import Component, Probe, compiled_probe, task_probe
from glassformer.rasp.decompile.program import program_source

__all__ = ["Decompiled", "Step", "decompile", "make_probe"]


@dataclass
class Decompiled:
    """A decompiled program with its faithfulness measurements."""

    program: L.SOp
    source: str
    steps: list[Step]
    match_position: float
    match_sequence: float
    n_inputs: int
    kept: list[Component]
    effects: dict
    seconds: float
    description: str = ""
    n_failed: int = 0
    grid: dict = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """The report as JSON-ready data: ``program`` (the source), ``match_sequence``, ``match_position``,
        ``n_inputs``, ``steps`` (expression, components, iia, ...), and how the model was pruned."""
        from glassformer.rasp.printing import expr_to_code

        return {
            "model": self.description,
            "program": self.source,
            "match_sequence": round(self.match_sequence, 6),
            "match_position": round(self.match_position, 6),
            "n_inputs": self.n_inputs,
            "n_failed": self.n_failed,
            "steps": [{
                "name": s.expr.name,
                "expression": f"{s.expr.name} = {expr_to_code(s.expr)}",
                "kind": s.kind,
                "components": [component_name(c) for c in s.components] or ["unembed"],
                "mapped_component": component_name(s.best_component) if s.best_component else None,
                "iia": s.iia,
                "iia_all": s.iia_all,
                "fit": s.fit,
                "necessity": round(sum(self.effects.get(c, 0.0) for c in s.components), 4),
                "detail": s.detail,
            } for s in self.steps],
            "kept_components": [component_name(c) for c in self.kept],
            "opaque_components": self.opaque(),
            "ablation_effect": {component_name(c): round(e, 4) for c, e in self.effects.items()},
            "seconds": round(self.seconds, 2),
        }

    def opaque(self, bar: float = 0.9) -> list[dict]:
        """The parts the program does not explain: each step whose reading fits its component (held-out
        R^2) or predicts its interventions (IIA) below ``bar`` -- left as the best table or mean found --
        and each component pruning kept that no step reads or is mapped to (IIA >= ``bar``)."""
        out = []
        for s in self.steps:
            if s.kind == "output":
                continue
            if s.fit < bar or (s.iia is not None and s.iia < bar):
                out.append({"component": "+".join(component_name(c) for c in s.components), "step": s.expr.name,
                            "kind": s.kind, "fit": s.fit, "iia": s.iia})
        read = {c for s in self.steps for c in s.components}
        read |= {c for s in self.steps if s.best_component and (s.iia or 0) >= bar for c in s.best_component}
        out += [{"component": component_name(c), "step": None, "kind": "unread", "fit": None, "iia": None}
                for c in self.kept if c not in read]
        return out

    def summary(self) -> str:
        lines = [f"{self.description}: match {self.match_position:.4f} per position, {self.match_sequence:.4f} per "
                 f"input ({self.n_inputs} fresh inputs); {len(self.steps)} steps, {self.seconds:.1f} s"]
        for s in self.steps:
            where = ", ".join(component_name(c) for c in s.components) or "unembed"
            iia = "" if s.iia is None else f", iia {s.iia:.3f} vs {component_name(s.best_component)}"
            lines.append(f"  {s.expr.name:18s} {s.kind:9s} <- {where:14s} fit {s.fit:.3f}{iia}")
        opaque = self.opaque()
        if opaque:
            lines.append("  opaque (fit or IIA < 0.9, or kept but not read): " + ", ".join(
                f"{o['component']}" + (f" as {o['step']}" if o["step"] else " (unread)") for o in opaque))
        return "\n".join(lines)


def component_name(c) -> str:
    """``L1H2``, ``L0.mlp``, or a group of them joined by ``+``."""
    if c and isinstance(c[0], tuple):
        return "+".join(component_name(x) for x in c)
    kind, layer, h = c
    return f"L{layer}H{h}" if kind == "head" else f"L{layer}.mlp"


def make_probe(model, task=None) -> Probe:
    """A probe for a CompiledModel, or for a Transformer with the task it was trained on."""
    from glassformer.rasp.compiler.compiled import CompiledModel

    if isinstance(model, CompiledModel):
        return compiled_probe(model)
    if task is None:
        raise InputError("decompile needs the task a trained model reads (decompile(model, task)); a compiled "
                         "model needs none")
    return task_probe(model, task)


def decompile(model, task=None, *, n_inputs: int = 1000, n_match: int = 1000, n_pairs: int = 200, seed: int = 0,
              probe: Probe | None = None, progress: bool = False) -> Decompiled:
    """Decompile ``model`` (a CompiledModel, or a Transformer with its ``task``) into a RASP program.

    ``n_inputs`` random inputs are read to fit the program, ``n_match`` *other* fresh inputs measure its
    match with the model, and ``n_pairs`` input pairs its IIA (see :mod:`.faithful`).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    probe = probe or make_probe(model, task)
    bar = tqdm(total=4, desc="decompile", disable=not progress, unit="stage")
    examples = probe.sample(n_inputs, seed)
    base = probe.outputs(examples)
    bar.set_postfix_str("pruning")
    few = examples[: min(len(examples), 400)]  # pruning needs fewer inputs than reading does
    kept, effects = core.prune(probe, few, base[: len(few)])
    bar.update()
    bar.set_postfix_str(f"reading {len(kept)} components")
    steps, _ = core.read_program(probe, examples, kept)
    program = steps[-1].expr
    used = {e.id for e in L.walk(program)}
    steps = [s for s in steps if s.expr.id in used]  # a step the output never reads is no part of the program
    bar.update()
    bar.set_postfix_str("match")
    fresh = probe.sample(n_match, seed + 1)
    scores = faithful.match(program, fresh, probe.outputs(fresh))
    bar.update()
    bar.set_postfix_str("interventions")
    pairs = probe.sample(n_pairs, seed + 2)
    grid = faithful.search_mapping(probe, program, steps, pairs, kept=kept)
    bar.update()
    bar.close()
    notes = {s.expr.id: _note(s) for s in steps}
    title = f"{probe.description}, decompiled: match {scores['match_position']:.4f} per position, " \
            f"{scores['match_sequence']:.4f} per input on {scores['n_inputs']} fresh inputs"
    source = program_source(program, notes, title)
    return Decompiled(program, source, steps, scores["match_position"], scores["match_sequence"], scores["n_inputs"],
                      kept, effects, time.perf_counter() - start, probe.description, scores["n_failed"], grid)


def _note(step: Step) -> str:
    where = ", ".join(component_name(c) for c in step.components) or "the unembedding"
    text = f"{where}: {step.detail} (fit {step.fit:.3f}"
    if step.iia is not None:
        text += f", iia {step.iia:.3f} against {component_name(step.best_component)}"
    return text + ")"
