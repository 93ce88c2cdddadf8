"""Every explain experiment, in its reduced (--quick) form, reaches its qualitative finding."""

import json

from glassformer.explain.experiments import registry, run_experiment


def run(name, tmp_path):
    result = run_experiment(name, tmp_path, quick=True, seed=0)
    assert (tmp_path / "finding.md").read_text().startswith(f"# {name}")
    assert json.loads((tmp_path / "metrics.json").read_text())["quick"] is True
    for fig in result.figures:
        assert fig.is_file() and fig.stat().st_size > 10_000  # a real plot, not an empty canvas
    return result


def test_the_eight_questions_are_registered():
    names = set(registry())
    assert {"post-ln-vs-pre-ln", "attention-scale", "positions", "queries-keys", "add-vs-concat", "heads-and-wo",
            "kv-cache", "length-extrapolation"} <= names


def test_pre_ln_trains_at_a_learning_rate_where_post_ln_fails(tmp_path):
    m = run("post-ln-vs-pre-ln", tmp_path).metrics
    acc = m["token_accuracy"]
    assert acc["pre|warm-up|0.03"] >= 0.9
    assert acc["post|warm-up|0.03"] < 0.5 and acc["post|no warm-up|0.03"] < 0.5
    pre = m["grad_norm_by_layer"]["pre"]
    assert max(pre) / min(pre) < 1.5  # Pre-LN's gradients are even across layers at initialisation


def test_unscaled_scores_saturate_softmax_and_kill_the_gradient(tmp_path):
    m = run("attention-scale", tmp_path).metrics
    big_u, big_s = m["unscaled"]["1024"], m["scaled"]["1024"]
    assert big_u["score_std"] > 25 and big_u["max_weight"] > 0.9 and big_u["entropy_bits"] < 0.5
    assert big_s["max_weight"] < 0.5 and big_s["grad_scores"] > 1000 * big_u["grad_scores"]
    assert all(0.8 < r["score_std"] < 1.25 for r in m["scaled"].values())


def test_positions_encoder_is_blind_to_order_and_decoder_is_not(tmp_path):
    m = run("positions", tmp_path).metrics
    acc = m["accuracy"]
    assert m["equivariance_gap"]["none"] < 1e-5 < 1e-2 < m["equivariance_gap"]["learned"]
    assert acc["encoder, no positions"] < 0.6  # chance is 0.5
    assert acc["encoder, learned positions"] > 0.9
    assert acc["decoder, no positions"] > 0.7  # the causal mask leaks order


def test_tied_queries_and_keys_cannot_express_a_cyclic_relation(tmp_path):
    m = run("queries-keys", tmp_path).metrics
    acc = m["token_accuracy"]
    assert acc["separate"] > 0.95 and acc["merged"] > 0.95
    assert acc["tied"] < acc["separate"] - 0.04
    assert min(m["per_letter_accuracy"]["tied"]) < 0.8 < min(m["per_letter_accuracy"]["separate"])


def test_concatenating_positions_trains_like_adding(tmp_path):
    m = run("add-vs-concat", tmp_path).metrics
    acc = m["sequence_accuracy"]
    assert acc["reverse|add"] > 0.9 and acc["reverse|concat"] > 0.9
    assert 0 <= m["wpos_in_we_subspace"]["reverse"]["learned"] < 0.5


def test_separate_heads_look_at_both_positions_and_w_o_speeds_learning(tmp_path):
    m = run("heads-and-wo", tmp_path).metrics
    acc, cover = m["token_accuracy"], m["coverage"]
    assert all(a > 1 / 7 + 0.2 for a in acc.values())  # every variant learns, W_O or not
    assert min(cover["2 heads"].values()) > max(cover["1 head"].values())  # two heads: sharper on each position
    assert acc["2 heads, no W_O"] < acc["2 heads"]  # frozen W_O = identity learns slower


def test_kv_cache_changes_nothing_but_rounding(tmp_path):
    m = run("kv-cache", tmp_path).metrics
    assert m["all_tokens_equal"]
    assert m["max_diff_float64"] < 1e-10 and m["max_diff_float32"] < 1e-4


def test_alibi_extrapolates_best(tmp_path, shakespeare_tiny):
    m = run("length-extrapolation", tmp_path).metrics
    change = {s: m["loss_beyond"][s] - m["loss_inside"][s] for s in m["loss_inside"]}
    assert change["alibi"] < 0.1  # the loss stays flat past the training length
    assert change["alibi"] == min(change.values())
