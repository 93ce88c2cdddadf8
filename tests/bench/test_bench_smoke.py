"""Each core benchmark runs end to end in its tiny ``--smoke`` mode and checks what makes its comparison fair
(same weights, same logits, same tokens). No timing is asserted: timings belong in bench/results/."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # `bench` lives beside the package, not in it

pytest.importorskip("transformers")

from bench import bench_gpu, bench_hooks, bench_sample, bench_text, bench_train, run_all  # noqa: E402
from bench import common  # noqa: E402
from bench.common import Timing, interleaved, speedup, throughput, timing_settings, train_flops_per_token  # noqa: E402
from glassformer.model.hooks import HookPoint  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny ops, one torch thread


def test_train_smoke_same_model_both_sides(tmp_path):
    results = bench_train.main(["--smoke", "--results-dir", str(tmp_path)])
    r = results["shapes"][0]
    assert set(r["max_logit_difference"]) == {"nanogpt", "hf_gpt2"}
    assert all(diff < 1e-5 for diff in r["max_logit_difference"].values())  # the twins compute the same function
    losses = r["first_step_loss"]
    assert losses["glassformer"] == pytest.approx(losses["hf_gpt2"], abs=1e-5)
    assert losses["glassformer"] == pytest.approx(losses["nanogpt"], abs=1e-5)
    assert all(side["tokens_per_s"] > 0 and side["mfu"] > 0 for side in r["sides"].values())
    assert r["fastest_peer"] in r["speedup"] and r["speedup_vs_fastest_peer"] == r["speedup"][r["fastest_peer"]]
    saved = json.loads((tmp_path / "core_train.json").read_text())
    assert saved["shapes"][0]["speedup_vs_hf"] == pytest.approx(r["speedup_vs_hf"])
    assert "| glassformer |" in (tmp_path / "core_train.md").read_text()


def test_sample_smoke_emits_the_same_tokens(tmp_path):
    results = bench_sample.main(["--smoke", "--results-dir", str(tmp_path)])
    case = results["cases"][0]
    assert case["same_tokens"]
    assert case["tokens_gf"] == case["tokens_hf"] == case["prompt_len"] + case["new_tokens"]
    assert (tmp_path / "core_sample.md").is_file()
    ct2 = results["ctranslate2"]  # a dedicated engine: skipped cleanly where ctranslate2 is not installed
    assert "skipped" in ct2 or all(ct2["same_tokens"].values())
    past = results["no_cache"][0]  # 4 + 20 tokens with n_ctx 16: past the window, glassformer's cache rolls
    assert set(past["sides"]) == {"glassformer", "nanogpt_no_cache", "glassformer_rerun_window"}


def test_hooks_bypass_really_bypasses_and_bare_forward_agrees(tmp_path):
    results = bench_hooks.main(["--smoke", "--results-dir", str(tmp_path)])
    forward = results["cases"][0]
    assert forward["bare_max_logit_difference"] < 1e-5
    assert 0 < forward["hook_calls_per_forward"] <= forward["hook_points"]
    # the bypass is real: a hook that fires normally does not fire inside hooks_bypassed, and is back after
    model, run, _, _ = bench_hooks.case_fns("forward", bench_hooks.SMOKE_CASES[0][1])
    fired = []
    with model.hooks({"blocks.0.resid_pre": lambda x, hook: fired.append(1)}):
        with bench_hooks.hooks_bypassed():
            run()
        assert fired == []
        run()
        assert fired == [1]


def test_text_smoke_both_recipes_learn(tmp_path):
    if not (bench_text.SHAKESPEARE_DIR / "tiny.txt").is_file():
        pytest.skip("shared/data/shakespeare/tiny.txt is not beside the repository")
    data = bench_text.main(["--smoke", "--results-dir", str(tmp_path)])
    for name, r in data["recipes"].items():
        first, last = r["curve"][0]["val_loss"], r["curve"][-1]["val_loss"]
        assert last < first - 0.05, f"{name}: val loss {first:.3f} -> {last:.3f} in 8 steps"
        assert r["train_config"]["batch_size"] == 12
    assert (tmp_path / "core_text.png").stat().st_size > 1000
    # the full-size default recipe is what the CLI trains: nanoGPT's CPU shape
    model, task, config = bench_text.default_recipe(bench_text.SHAKESPEARE_DIR / "tiny.txt", None)
    c = model.config
    assert (c.d_model, c.n_layers, c.n_heads, c.n_ctx, config.batch_size, config.steps) == (128, 4, 4, 64, 12, 1650)
    assert (c.positional, c.act, c.d_mlp, c.norm, c.bias, config.lr) == ("rope", "swiglu", 344, "layernorm", False, 3e-3)


def test_gpu_bench_code_path_and_graph_report(tmp_path):
    results = bench_gpu.main(["--smoke", "--results-dir", str(tmp_path)])
    graphs = results["compile_graphs"]
    assert graphs["as_is"]["graph_breaks"] == 0, graphs  # the model traces as one graph: no host syncs
    assert graphs["as_is"]["graphs"] == 1
    assert set(results["sides"]) == {"glassformer", "hf_gpt2"}


def test_interleaved_alternates_order_and_counts_samples():
    order = []
    timings = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, repeats=3)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B / B A / A B
    assert all(len(t.samples) == 3 for t in timings.values())
    assert Timing([1.0, 2.0, 3.0, 4.0, 100.0]).median == 3.0
    assert train_flops_per_token(1000, 2, 8, 16) == 6 * 1000 + 12 * 2 * 8 * 16


def test_throughput_turns_median_samples_into_rates(monkeypatch):
    calls = []

    def fake_interleaved(candidates, *, warmup, repeats, device):  # one sample each, fixed timings
        for fn in candidates.values():
            fn()
        return {"a": Timing([2.0, 4.0, 6.0]), "b": Timing([8.0, 8.0, 8.0])}

    monkeypatch.setattr(common, "interleaved", fake_interleaved)
    sides = throughput({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, tokens_per_call=10,
                       calls_per_sample=3, warmup=0, repeats=3, flops_per_token=2.0, peak_flops=40.0)
    assert calls == ["a"] * 3 + ["b"] * 3  # a sample is calls_per_sample calls
    assert sides["a"]["tokens_per_s"] == 10 * 3 / 4.0  # over the median sample
    assert sides["a"]["flops_per_s"] == 15.0 and sides["a"]["mfu"] == 15.0 / 40.0
    assert sides["a"]["timing"]["median_s"] == 4.0
    assert speedup(sides, "a", "b") == 2.0


def test_timing_settings_follow_the_mode():
    def args(**kw):
        return Namespace(**{"smoke": False, "quick": False, "repeats": None, **kw})

    assert timing_settings(args(smoke=True, repeats=7), full=9, quick=5) == {"repeats": 2, "warmup": 1}
    assert timing_settings(args(quick=True), full=9, quick=5) == {"repeats": 5, "warmup": 2}
    assert timing_settings(args(repeats=7), full=9, quick=5) == {"repeats": 7, "warmup": 2}
    assert timing_settings(Namespace(smoke=False, quick=False), full=10, quick=5, warmup=3) == {"repeats": 10, "warmup": 3}


def test_run_all_discovers_benches_and_passes_flags_only_where_understood(tmp_path):
    names = [s.stem for s in run_all.discover()]
    assert {"bench_train", "bench_sample", "bench_hooks", "bench_text", "bench_gpu"} <= set(names)
    foreign = tmp_path / "bench_other.py"
    foreign.write_text("print('no flags here')\n")
    assert run_all.command_for(foreign, ["--smoke"], ["--x"])[1:] == [str(foreign), "--x"]
    own = run_all.command_for(REPO / "bench" / "bench_train.py", ["--smoke"], [])
    assert own[-1] == "--smoke"
    with pytest.raises(SystemExit, match="no benchmark named"):
        run_all.discover(["nonexistent"])


def test_hooks_bypassed_restores_hookpoint_call():
    original = HookPoint.__call__
    with pytest.raises(RuntimeError):
        with bench_hooks.hooks_bypassed():
            assert HookPoint.__call__ is not original
            raise RuntimeError("boom")
    assert HookPoint.__call__ is original
    assert torch.equal(HookPoint()(torch.ones(2)), torch.ones(2))
