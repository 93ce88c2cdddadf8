"""The four lens experiments, in their reduced (quick) form, reach their findings."""

import json

import pytest

from glassformer.explain.experiments import registry, run_experiment
from glassformer.explain.experiments.logit_lens_shakespeare import DATA


def run(name, tmp_path, seed, record_property=None):
    result = run_experiment(name, tmp_path, quick=True, seed=seed)
    assert (tmp_path / "finding.md").read_text().startswith(f"# {name}")
    assert json.loads((tmp_path / "metrics.json").read_text())["quick"] is True
    for fig in result.figures:
        assert fig.is_file() and fig.stat().st_size > 10_000, fig  # a real plot
    if record_property:  # a sweep over seeds reads the numbers the assertions rest on
        for key, value in result.metrics.items():
            if isinstance(value, (int, float, str)) or value is None:
                record_property(key, value)
    return result.metrics


def test_the_lens_experiments_are_registered():
    assert {"induction-heads", "grokking", "logit-lens-shakespeare", "patching"} <= set(registry())


def test_induction_heads_form_and_compose(tmp_path, seed, record_property):
    m = run("induction-heads", tmp_path, seed, record_property)
    assert m["previous_token_score"] > 0.5 and m["previous_token_head"].startswith("L0")
    assert m["induction_score"] > 0.5 and m["induction_head"].startswith("L1")
    assert m["loss_repeat"] < m["loss_first_occurrence"] - 2.0  # the in-context loss drop
    assert m["k_composition"] > m["k_composition_other_pairs"]
    assert m["k_composition"] > m["q_composition"] and m["k_composition"] > m["v_composition"]
    assert m["loss_repeat_without_layer1"] > m["loss_repeat"] + 2.0  # without layer 1 the repeat is a guess again


def test_patching_finds_the_layer1_heads_carrying_the_answer(tmp_path, seed, record_property):
    m = run("patching", tmp_path, seed, record_property)
    assert m["clean_logit_diff"] > 1 and m["corrupted_logit_diff"] < -1
    assert m["carrier_heads"] and all(head.startswith("L1") for head in m["carrier_heads"])
    assert m["carrier_heads_restored"] > 0.8 and m["layer0_max_restored"] < 0.2
    assert m["resid_post_layer0_best_position"] == "x7" and m["resid_post_layer0_best"] > 0.9  # the answer's earlier copy
    assert m["resid_post_layer1_best_position"] == "x6'"  # moved to the last position by layer 1


def test_grokking_generalises_long_after_memorising(tmp_path, seed, record_property):
    m = run("grokking", tmp_path, seed, record_property)
    assert m["step_train_99"] is not None and m["test_accuracy_at_train_99"] < 0.6
    assert m["step_test_95"] is not None and m["step_test_95"] >= 1.5 * m["step_train_99"]
    assert m["final_test_accuracy"] > 0.95
    assert m["fourier_top5_fraction"] > 0.6 and m["fourier_top5_fraction"] > 2 * m["fourier_top5_fraction_init"]


@pytest.mark.skipif(not DATA.is_file(), reason=f"shared Shakespeare text not found at {DATA}")
def test_logit_lens_sharpens_with_depth_and_the_tuned_lens_helps(tmp_path, seed, record_property):
    m = run("logit-lens-shakespeare", tmp_path, seed, record_property)
    acc, kl = m["logit_lens"]["accuracy"], m["logit_lens"]["kl_to_final"]
    assert acc[-1] > acc[0] + 0.05  # the final layer predicts better than the embeddings alone
    assert kl[0] > kl[-2] > kl[-1] == pytest.approx(0.0, abs=1e-6)
    assert m["intermediate_kl_tuned_lens"] < m["intermediate_kl_logit_lens"]
    assert m["tuned_lens"]["kl_to_final"][0] < kl[0]
