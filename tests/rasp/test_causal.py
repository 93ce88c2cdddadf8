"""Causal compilation (``causal=True``): programs whose selectors look only back compile into decoders
that equal the interpreter; a selector that may look ahead is refused with a clear error.  Also the
ground truth a compiled model exposes (components, residual dimensions, edges), checked by ablation."""

import random

import pytest
import torch

from glassformer import rasp
from glassformer.rasp import (
    EQ, GEQ, LEQ, LT, Aggregate, Map, Select, SelectorWidth, indices, numerical, tokens,
)
from glassformer.rasp import library
from glassformer.rasp.errors import RaspCompileError, RaspEvaluationError

from rasp_inputs import inputs_for

CAUSAL = sorted(name for name, e in library.PROGRAMS.items() if e.causal)
NOT_CAUSAL = sorted(name for name, e in library.PROGRAMS.items() if not e.causal)


def test_the_library_marks_its_causal_programs():
    assert {"frac_prevs", "running_max", "shift_by", "prefix_histogram", "balanced_so_far"} <= set(CAUSAL)
    assert {"length", "reverse", "histogram", "sort", "dyck1"} <= set(NOT_CAUSAL)


@pytest.mark.parametrize("max_len", [5, 12])
@pytest.mark.parametrize("name", CAUSAL)
def test_causal_library_program_compiles_into_an_exact_decoder(name, max_len):
    entry = library.PROGRAMS[name]
    program = entry.build()
    compiled = rasp.compile(program, vocab=entry.vocab, max_len=max_len, causal=True)
    assert compiled.causal and compiled.model.config.arch == "decoder"
    cases = inputs_for(name, entry.vocab, max_len, count=300)
    checked = 0
    for xs, got in zip(cases, compiled.run_batch(cases)):
        try:
            want = rasp.evaluate(program, xs)
        except RaspEvaluationError:
            continue
        assert got == want, (xs, got, want)
        # the static check is sound: each position's output depends only on the prefix
        i = len(xs) // 2
        assert rasp.evaluate(program, xs[: i + 1])[i] == want[i]
        checked += 1
    assert checked >= min(len(cases), 300) // 2


@pytest.mark.parametrize("name", CAUSAL)
def test_decoder_and_encoder_share_weights_and_logits(name):
    """A causal program's weights do not depend on the mask: the decoder is the encoder's weights
    with the mask on, and since no head selects a later key, the logits agree up to the weight the
    encoder's softmax leaks onto later unselected keys (bounded by the sharpness stage; ~1e-3 here)."""
    entry = library.PROGRAMS[name]
    enc = rasp.compile(entry.build(), vocab=entry.vocab, max_len=6)
    dec = rasp.compile(entry.build(), vocab=entry.vocab, max_len=6, causal=True)
    assert not enc.causal and enc.model.config.arch == "encoder"
    for (k, a), (_, b) in zip(enc.model.state_dict().items(), dec.model.state_dict().items()):
        assert torch.equal(a, b), k
    ids = enc.encode(list(entry.example)[:6])[None]
    assert torch.allclose(enc.model(ids), dec.model(ids), atol=1e-2)
    assert enc.run(entry.example[:6]) == dec.run(entry.example[:6])


@pytest.mark.parametrize("name", NOT_CAUSAL)
def test_programs_that_look_ahead_are_refused(name):
    entry = library.PROGRAMS[name]
    with pytest.raises(RaspCompileError, match=r"causal=True needs every selector to select only keys at or before"):
        rasp.compile(entry.build(), vocab=entry.vocab, max_len=6, causal=True)


def test_refusals_name_the_operation_and_a_pair_of_positions():
    ahead = Aggregate(Select(indices, indices, GEQ), tokens).named("next_or_self")
    with pytest.raises(RaspCompileError, match=r"'next_or_self'.*selects key position 1 for query position 0"):
        rasp.compile(ahead, "ab", 4, causal=True)
    with pytest.raises(RaspCompileError, match=r"'length'.*use `indices \+ 1`"):
        rasp.compile(rasp.length + 0, "ab", 4, causal=True)
    same = SelectorWidth(Select(tokens, tokens, EQ)).named("same")
    with pytest.raises(RaspCompileError, match=r"'same'.*no part of it compares positions"):
        rasp.compile(same, "ab", 4, causal=True)
    # a shifted comparison that happens to look back is accepted (k + 2 == q), one that does not is not
    back2 = Aggregate(Select(indices + 2, indices, EQ), tokens).named("back2")
    assert rasp.compile(back2, "ab", 6, causal=True).run("abab") == rasp.evaluate(back2, "abab")
    fwd = Aggregate(Select(indices - 1, indices, EQ), tokens).named("fwd")
    with pytest.raises(RaspCompileError, match=r"'fwd'.*selects key position 1 for query position 0"):
        rasp.compile(fwd, "ab", 6, causal=True)


def test_a_conjunction_with_one_backward_clause_is_causal():
    """Any selector becomes causal by adding ``& Select(indices, indices, LEQ)``, as the error suggests."""
    marks = numerical(Map(lambda t: 1 if t == "a" else 0, tokens)).named("is_a")
    same_before = Select(tokens, tokens, EQ) & Select(indices, indices, LT)
    program = numerical(Aggregate(Select(indices, indices, LEQ), marks)).named("frac_a") + 0
    program2 = SelectorWidth(same_before).named("seen_before")
    rng = random.Random(0)
    for p in (program, program2):
        compiled = rasp.compile(p, "abc", 10, causal=True)
        cases = [[rng.choice("abc") for _ in range(rng.randint(1, 10))] for _ in range(200)]
        assert compiled.run_batch(cases) == [rasp.evaluate(p, xs) for xs in cases]


def test_components_are_the_ground_truth():
    """Each listed component matters: zeroing its output changes the model's answer on some input;
    each writes where ``residual_dims`` says, and the edges connect the writers to their readers."""
    entry = library.PROGRAMS["balanced_so_far"]
    program = entry.build()
    compiled = rasp.compile(program, vocab=entry.vocab, max_len=6, causal=True)
    comps = compiled.components()
    assert [c["component"] for c in comps] == ["blocks.0.attn.head0", "blocks.0.mlp[0:3]", "blocks.0.mlp[3:8]",
                                              "blocks.1.attn.head0", "blocks.1.mlp[0:3]"]
    labels = compiled.residual_labels
    for c in comps:
        start, stop = c["writes_dims"]
        assert all(label.split("=")[0] == c["writes"] for label in labels[start:stop])
    assert compiled.output_sop == "balanced_so_far" and set(compiled.embedded_sops()) == {"bos", "tokens", "indices"}
    assert ("blocks.0.attn.head0", "blocks.0.mlp[0:3]", "balance_x28") in compiled.edges()
    assert ("embed", "blocks.0.attn.head0", "tokens") in compiled.edges()

    cases = [list(x) for x in ("(", "()", "())", "(())", "()()", ")(", "(()", "(()())")]
    ids = [compiled.encode(xs)[None] for xs in cases]
    clean = [compiled.model(i).argmax(-1) for i in ids]
    for c in comps:
        def ablate(act, hook, c=c):
            if c["kind"] == "attention":
                act[:, :, c["head"]] = 0  # z [batch, pos, head, d_head]
            else:
                act[..., c["units"][0]:c["units"][1]] = 0  # mlp.post [batch, pos, d_mlp]
            return act
        hook = f"blocks.{c['layer']}.attn.z" if c["kind"] == "attention" else f"blocks.{c['layer']}.mlp.post"
        with compiled.model.hooks({hook: ablate}):
            changed = any(not torch.equal(compiled.model(i).argmax(-1), y) for i, y in zip(ids, clean))
        assert changed, c["component"]


def test_ground_truth_survives_save_and_load(tmp_path):
    compiled = rasp.compile(library.prefix_histogram(), "abc", 5, causal=True)
    compiled.save(tmp_path / "ph")
    loaded = type(compiled).load(tmp_path / "ph")
    assert loaded.causal and loaded.components() == compiled.components() and loaded.edges() == compiled.edges()
    assert loaded.run("abaa") == [1, 1, 2, 3]
