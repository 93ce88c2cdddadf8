"""The cost of hook points with nothing attached.

Every intermediate of a glassformer model passes through a ``HookPoint`` (an identity with a list of
hook functions). With no hook attached that should cost nothing measurable; the bar is < 3% of the
forward. Three ways to see it, all in one run:

1. **A/B, interleaved**: the model's forward as is, vs the same model with ``HookPoint.__call__``
   replaced by a bare ``lambda self, x: x`` (hook points that cannot do anything). Overhead =
   median(as is) / median(bypassed) - 1. On a noisy machine this difference is below the noise, so:
2. **Counted**: the number of hook-point calls in one forward times the measured cost of one call
   (a tight loop of a million calls), plus the optional hook points (``attn.result``, ``attn.q_input`` /
   ``k_input`` / ``v_input``: computed only while hooked, so idle they cost one test of ``point.fns`` each,
   timed the same way), divided by the forward's median time. This is the overhead the A/B measures,
   without its noise.
3. **No modules at all**: a hand-written functional forward of the same equations with the same
   weights (``bare_forward``, checked to give the same logits). Its gap to the model is the price of
   the readable module structure as a whole, hooks included.

Cases: a training-sized forward (gpt-small, batch 16), the nanoGPT CPU shape, and a one-token decode
step with the KV cache at batch 1 (where Python overhead matters most).

    python bench/bench_hooks.py [--quick | --smoke]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    bench_options,
    interleaved,
    machine_info,
    machine_line,
    markdown_table,
    parse_options,
    ratio,
    repeat,
    save_results,
    timing_settings,
)
from bench.gpt2_twin import Shape, glassformer_config
from glassformer import Transformer
from glassformer.model.hooks import HookPoint

CASES = [
    ("forward", Shape("gpt-small", n_layers=4, d_model=256, n_heads=4, n_ctx=256, batch=16, d_vocab=256)),
    ("forward", Shape("nanogpt-cpu", n_layers=4, d_model=128, n_heads=4, n_ctx=64, batch=12, d_vocab=65)),
    ("decode-step", Shape("gpt-small", n_layers=4, d_model=256, n_heads=4, n_ctx=256, batch=1, d_vocab=256)),
]
SMOKE_CASES = [("forward", Shape("smoke", 1, 32, 2, 16, 2, 17)), ("decode-step", Shape("smoke", 1, 32, 2, 16, 1, 17))]


@contextmanager
def hooks_bypassed():
    """Replace every HookPoint's call with a bare identity for the duration of the block."""
    original = HookPoint.__call__
    HookPoint.__call__ = lambda self, x: x
    try:
        yield
    finally:
        HookPoint.__call__ = original


def count_hook_calls(model: Transformer, run) -> int:
    """How many hook-point calls one ``run()`` makes (with nothing attached)."""
    calls = 0
    original = HookPoint.__call__

    def counting(self, x):
        nonlocal calls
        calls += 1
        return original(self, x)

    HookPoint.__call__ = counting
    try:
        run()
    finally:
        HookPoint.__call__ = original
    return calls


def hook_call_seconds(n: int = 1_000_000) -> float:
    """Seconds per call of an idle HookPoint minus an empty loop's per-iteration time (median of 5)."""
    point, x = HookPoint(), torch.zeros(1)
    per_call = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            point(x)
        t1 = time.perf_counter()
        for _ in range(n):
            pass
        t2 = time.perf_counter()
        per_call.append(((t1 - t0) - (t2 - t1)) / n)
    return sorted(per_call)[2]


def optional_check_seconds(n: int = 1_000_000) -> float:
    """Seconds per idle test of an optional hook point (``if point.fns:``), minus an empty loop's (median of 5)."""
    point = HookPoint(optional=True)
    per_check = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            if point.fns:
                pass
        t1 = time.perf_counter()
        for _ in range(n):
            pass
        t2 = time.perf_counter()
        per_check.append(((t1 - t0) - (t2 - t1)) / n)
    return max(0.0, sorted(per_check)[2])


@torch.no_grad()
def bare_forward(model: Transformer, tokens: torch.Tensor) -> torch.Tensor:
    """The GPT-shaped (pre-LN, learned positions, tanh-GELU, tied) forward as plain functions, no modules:

        x = W_E[tokens] + W_pos[pos];  per block: x += Attn(LN1(x)); x += MLP(LN2(x));  LN_f(x) W_E^T + b_U
    """
    c = model.config
    b, p = tokens.shape
    x = model.embed.W_E[tokens] + model.pos_embed.W_pos[:p]  # [batch, pos, d_model]
    for block in model.blocks:
        a, m = block.attn, block.mlp
        h = F.layer_norm(x, (c.d_model,), block.ln1.w, block.ln1.b, c.norm_eps)
        W_QKV = torch.cat([a.W_Q, a.W_K, a.W_V], dim=0).permute(1, 0, 2).reshape(c.d_model, -1)  # [d_model, 3*heads*d_head]
        b_QKV = torch.cat([a.b_Q, a.b_K, a.b_V], dim=0).reshape(-1)
        q, k, v = (h @ W_QKV + b_QKV).view(b, p, 3 * c.n_heads, c.d_head).transpose(1, 2).chunk(3, dim=1)  # [batch, heads, pos, d_head]
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=c.scale)  # [batch, heads, pos, d_head]
        x = x + z.transpose(1, 2).reshape(b, p, -1) @ a.W_O.reshape(-1, c.d_model) + a.b_O
        h = F.layer_norm(x, (c.d_model,), block.ln2.w, block.ln2.b, c.norm_eps)
        x = x + F.gelu(h @ m.W_in + m.b_in, approximate="tanh") @ m.W_out + m.b_out
    x = F.layer_norm(x, (c.d_model,), model.ln_final.w, model.ln_final.b, c.norm_eps)
    return x @ model.embed.W_E.T + model.unembed.b_U  # [batch, pos, d_vocab]


def case_fns(kind: str, shape: Shape):
    """(model, run as is, bare functional run or None, logits-agreement check)."""
    torch.manual_seed(0)
    model = Transformer(glassformer_config(shape)).eval()
    g = torch.Generator().manual_seed(3)
    if kind == "forward":
        tokens = torch.randint(0, shape.d_vocab, (shape.batch, shape.n_ctx), generator=g)  # [batch, n_ctx]

        def run():
            with torch.no_grad():
                return model(tokens)

        agree = (run() - bare_forward(model, tokens)).abs().max().item()
        return model, run, (lambda: bare_forward(model, tokens)), agree
    # decode-step: one new token against a KV cache holding half the context
    prefix = torch.randint(0, shape.d_vocab, (shape.batch, shape.n_ctx // 2), generator=g)
    new = torch.randint(0, shape.d_vocab, (shape.batch, 1), generator=g)
    with torch.no_grad():
        cache = model.new_cache()
        model(prefix, cache=cache)
    saved = [copy.copy(layer) for layer in cache.layers]  # the per-layer state after the prefix

    def run():
        cache.layers = [copy.copy(layer) for layer in saved]  # rewind to the prefix (appends make new tensors)
        with torch.no_grad():
            return model(new, cache=cache)

    return model, run, None, None


def bench_case(kind: str, shape: Shape, *, repeats: int, warmup: int, per_call_s: float, per_check_s: float) -> dict:
    model, run, bare, agree = case_fns(kind, shape)
    inner = 50 if kind == "decode-step" else 1
    as_is = repeat(run, inner)

    def bypassed():
        with hooks_bypassed():
            as_is()

    candidates = {"as_is": as_is, "hooks_bypassed": bypassed}
    if bare is not None:
        candidates["bare_functional"] = bare
    timings = interleaved(candidates, warmup=warmup, repeats=repeats)
    n_calls = count_hook_calls(model, run)
    n_optional = len(model.hook_names(optional=True)) - len(model.hook_names())  # idle: one `if point.fns` each
    forward_s = timings["as_is"].median / inner
    result = {
        "kind": kind,
        "shape": shape.__dict__,
        "hook_points": len(model.hook_names()),
        "hook_calls_per_forward": n_calls,
        "optional_points": n_optional,
        "forward_median_s": forward_s,
        "timings": {name: t.summary() for name, t in timings.items()},
        "overhead_ab": ratio(timings["as_is"], timings["hooks_bypassed"]) - 1,
        "overhead_counted": (n_calls * per_call_s + n_optional * per_check_s) / forward_s,
        "noise": max(t.spread for t in timings.values()),
    }
    if bare is not None:
        result["bare_max_logit_difference"] = agree
        result["module_structure_overhead"] = ratio(timings["as_is"], timings["bare_functional"]) - 1
    return result


def to_markdown(results: dict) -> str:
    rows = []
    for r in results["cases"]:
        s = Shape(**r["shape"])
        rows.append([
            r["kind"], s.describe(), f"{r['forward_median_s'] * 1e3:,.1f} ms", r["hook_calls_per_forward"],
            r.get("optional_points", "-"),
            f"{r['overhead_ab']:+.2%}", f"{r['overhead_counted']:.3%}", f"{r['noise']:.1%}",
            f"{r['module_structure_overhead']:+.1%}" if "module_structure_overhead" in r else "-",
        ])
    return "\n".join([
        "# Hook points with nothing attached",
        "",
        f"{machine_line(results['machine'])} One idle hook-point call costs {results['hook_call_ns']:.0f} ns; "
        f"one idle optional hook point (a test of ``point.fns``) {results.get('optional_check_ns', float('nan')):.0f} ns. "
        "Bar: < 3% of the forward.",
        "",
        markdown_table(
            ["case", "shape", "forward", "hook calls", "optional points", "overhead A/B (median)", "overhead counted",
             "noise (IQR/median)",
             "model vs bare functional"],
            rows,
        ),
        "",
        "A/B = as is vs HookPoint.__call__ replaced by an identity, interleaved; counted = (calls x cost per call + "
        "optional points x cost per test) / forward time; bare functional = the same equations as plain torch calls with the same weights (all module, "
        "hook and readability overhead together; max |logit difference| to the model: "
        + ", ".join(f"{r['bare_max_logit_difference']:.1e}" for r in results["cases"] if "bare_max_logit_difference" in r) + ").",
    ])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--smoke", action="store_true", help="tiny model, few repeats (for tests)")
    args = parse_options(bench_options(parser, "hooks", repeats=(21, 9)), argv)
    settings = timing_settings(args, full=21, quick=9, smoke=3, warmup=3)
    per_call_s = hook_call_seconds(20_000 if args.smoke else 1_000_000)
    per_check_s = optional_check_seconds(20_000 if args.smoke else 1_000_000)
    results = {"machine": machine_info(), "settings": settings, "hook_call_ns": per_call_s * 1e9,
               "optional_check_ns": per_check_s * 1e9, "cases": []}
    for kind, shape in SMOKE_CASES if args.smoke else CASES:
        r = bench_case(kind, shape, **settings, per_call_s=per_call_s, per_check_s=per_check_s)
        results["cases"].append(r)
        print(f"{kind} {shape.describe()}: A/B {r['overhead_ab']:+.2%}, counted {r['overhead_counted']:.3%} "
              f"({r['hook_calls_per_forward']} calls), noise {r['noise']:.1%}", flush=True)
    save_results("hooks", results, to_markdown(results), args.results_dir)
    return results


if __name__ == "__main__":
    main()
