"""Ground truth: read from the compiled weights, checked by ablation; distractors lie off the circuit."""

import re

import numpy as np
import pytest
import torch

from glassformer import rasp
from glassformer.circuits.errors import CircuitsError
from glassformer.circuits.inputs import sample_tokens
from glassformer.circuits.merge import merge
from glassformer.circuits.programs import random_program
from glassformer.circuits.truth import ground_truth


def test_reverse_has_the_textbook_circuit():
    """reverse: layer 0's head computes the length (1/(n+1) on BOS), layer 0's MLP opp_idx = n - 1 - i,
    layer 1's head copies the token at opp_idx."""
    compiled = rasp.compile(rasp.library.reverse(), vocab="abc", max_len=5)
    truth = ground_truth(compiled)
    assert truth.nodes == ["a0.0", "m0", "a1.0"]
    assert {("a0.0", "m0"), ("m0", "a1.0.q"), ("embed", "a1.0.v"), ("a1.0", "logits")} <= set(truth.edges)
    assert ("a0.0", "logits") not in truth.edges  # the length never reaches the unembedding directly
    c = truth.causal
    assert c["true_nodes_changing_output"] == 3 and c["other_nodes_changing_output"] == 0
    assert c["true_edges_changing_output"] == len(truth.edges) and c["other_edges_changing_output"] == 0
    # the key side of the copy head reads positions only: the same for every input
    assert ("embed", "a1.0.k") in truth.constant_edges and ("embed", "a1.0.v") not in truth.constant_edges


def test_a_distractor_changes_nothing_and_is_off_the_circuit():
    main = rasp.compile(rasp.library.histogram(), vocab="abcd", max_len=5)
    _, other = random_program(7, "abcd", 5)
    merged = merge(main, other)
    tokens, mask = sample_tokens(main, 60, np.random.default_rng(0))
    with torch.no_grad():
        assert torch.equal(merged.model(tokens, attention_mask=mask), main.model(tokens, attention_mask=mask).to(
            merged.model.embed.W_E.dtype))
    alone, together = ground_truth(main), ground_truth(merged)
    assert together.nodes == alone.nodes  # the distractor's heads (a*.1, ...) are all outside
    n_main_heads = main.model.config.n_heads
    assert all(int(n.split(".")[1]) < n_main_heads for n in together.nodes if n.startswith("a"))
    assert together.causal["other_nodes_changing_output"] == 0


def test_merge_refuses_another_vocabulary():
    a = rasp.compile(rasp.library.histogram(), vocab="abc", max_len=4)
    b = rasp.compile(rasp.library.histogram(), vocab="abcd", max_len=4)
    with pytest.raises(CircuitsError, match="vocabulary"):
        merge(a, b)


def test_random_programs_are_reproducible_and_exact():
    p1, c1 = random_program(3, "abc", 4)
    p2, c2 = random_program(3, "abc", 4)
    anonymous = lambda p: re.sub(r"_\d+", "", rasp.to_code(p))  # noqa: E731  (labels count globally)
    assert anonymous(p1) == anonymous(p2)
    inputs = ["abca", "cc", "b", "acba"]
    for xs, got in zip(inputs, c1.run_batch(inputs)):
        try:
            assert got == rasp.evaluate(p1, list(xs))
        except rasp.RaspEvaluationError:
            pass


def test_tracr_library_ports_are_suite_members_with_a_checked_truth():
    """Tracr's own programs, built with Tracr's API and compiled through ``compile_rasp_to_model``: their
    ground truth is read from the weights and every node of it matters causally (nothing else does)."""
    from glassformer.circuits.suite import tracr_entries

    entries = {e.program: e for e in tracr_entries() if e.max_len == 4}
    assert len(entries) == 14 and entries["shift_by"].causal and not entries["sort"].causal
    for name in ("sort", "shift_by"):
        compiled = entries[name].build()
        assert compiled.model.config.arch == ("decoder" if entries[name].causal else "encoder")
        truth = ground_truth(compiled)
        assert truth.causal["true_nodes_changing_output"] == len(truth.nodes) > 0
        assert truth.causal["other_nodes_changing_output"] == 0 and truth.causal["other_edges_changing_output"] == 0
