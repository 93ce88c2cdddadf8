"""Circuits with known answers: compiled RASP models whose circuit is known exactly, and the scores of
every circuit-finding method against them (docs/circuits.md).

    from glassformer import circuits, rasp
    compiled = rasp.compile(rasp.library.reverse(), vocab="abc", max_len=5)
    truth = circuits.ground_truth(compiled)            # nodes, edges, and the ablation check
    ctx = circuits.Context(compiled)                    # clean / corrupt pairs and the metric
    scores = circuits.run_method("eap_ig", ctx)         # one score per edge

Modules, bottom up: graph (senders, receivers, a patchable forward), inputs, truth, programs (random
programs), tracr_ports (Tracr's library), merge (distractors), decompiler (rasp.decompile as a method),
methods, scoring, trained (compiled-then-trained), suite, cli.
"""

from glassformer.circuits.errors import CircuitsError
from glassformer.circuits.graph import CircuitGraph
from glassformer.circuits.merge import merge
from glassformer.circuits.methods import METHODS, Context, Scores, register_method, run_method
from glassformer.circuits.programs import random_program
from glassformer.circuits.scoring import auroc, score_model, score_suite
from glassformer.circuits.suite import build_suite, default_entries, load_suite
from glassformer.circuits.truth import GroundTruth, ground_truth

__all__ = [
    "METHODS", "CircuitGraph", "CircuitsError", "Context", "GroundTruth", "Scores", "auroc", "build_suite",
    "default_entries", "ground_truth", "load_suite", "merge", "random_program", "register_method", "run_method",
    "score_model", "score_suite",
]
