"""Training throughput: glassformer vs Hugging Face GPT-2 of the same shape, batch and weights.

One training step, identical for both sides:

    logits = model(x)                                   [batch, n_ctx, d_vocab]
    loss   = cross_entropy(logits, y)                   mean over batch * n_ctx targets
    loss.backward(); AdamW.step(); zero_grad()          torch.optim.AdamW, same settings

Reported per shape: tokens/s (median over interleaved repeats), the ratio glassformer / HF (the bar:
>= 1.0), MFU = tokens/s * FLOPs-per-token / measured fp32 matmul peak (FLOPs formula in
``bench/common.py``), and the peak-RSS growth of a few steps in a fresh process.

    python bench/bench_train.py            # full: two shapes
    python bench/bench_train.py --quick    # fewer repeats
    python bench/bench_train.py --smoke    # seconds: tiny shape, results to a temp folder
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    bench_options,
    fmt_si,
    machine_info,
    machine_line,
    markdown_table,
    matmul_peak_flops,
    parse_options,
    peak_memory_cpu,
    save_results,
    speedup,
    throughput,
    timing_settings,
)
from bench.gpt2_twin import Shape, build_pair, max_logit_difference

SHAPES = {
    "gpt-small": Shape("gpt-small", n_layers=4, d_model=256, n_heads=4, n_ctx=256, batch=16, d_vocab=256),
    # nanoGPT's README CPU run: n_layer 4, n_head 4, n_embd 128, block 64, batch 12, 65 characters
    "nanogpt-cpu": Shape("nanogpt-cpu", n_layers=4, d_model=128, n_heads=4, n_ctx=64, batch=12, d_vocab=65),
}
SMOKE_SHAPE = Shape("smoke", n_layers=1, d_model=32, n_heads=2, n_ctx=16, batch=2, d_vocab=17)


def train_step_fn(model, side: str, shape: Shape, seed: int = 1):
    """A zero-argument closure that runs one training step of ``model`` on a fixed random batch."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, shape.d_vocab, (shape.batch, shape.n_ctx), generator=g)  # [batch, n_ctx]
    y = torch.randint(0, shape.d_vocab, (shape.batch, shape.n_ctx), generator=g)  # [batch, n_ctx]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    model.train()

    def step() -> float:
        logits = model(x) if side == "glassformer" else model(input_ids=x).logits  # [batch, n_ctx, d_vocab]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def build_workload(shape: dict, side: str, steps: int = 1):
    """Module-level builder (used in the memory subprocess too): the step closure for one side."""
    shape = Shape(**shape)
    gf, hf = build_pair(shape)
    model = gf if side == "glassformer" else hf
    step = train_step_fn(model, side, shape)

    def run() -> None:
        for _ in range(steps):
            step()

    return run


def bench_shape(shape: Shape, *, repeats: int, warmup: int, steps_per_sample: int, peak_flops: float, memory: bool) -> dict:
    gf, hf = build_pair(shape)
    probe = torch.randint(0, shape.d_vocab, (2, shape.n_ctx))
    logit_diff = max_logit_difference(gf, hf, probe)
    steps = {"glassformer": train_step_fn(gf, "glassformer", shape), "hf_gpt2": train_step_fn(hf, "hf_gpt2", shape)}
    # Same weights and data: the first step's losses must agree (a check that both do the same work).
    first_loss = {side: step() for side, step in steps.items()}
    sides = throughput(steps, tokens_per_call=shape.tokens_per_batch, calls_per_sample=steps_per_sample, warmup=warmup,
                       repeats=repeats, flops_per_token=shape.train_flops_per_token, peak_flops=peak_flops)
    if memory:
        for side in sides:
            sides[side]["memory"] = peak_memory_cpu(build_workload, {"shape": shape.__dict__, "side": side, "steps": 1}, calls=2)
    return {
        "shape": shape.__dict__,
        "matmul_params": shape.matmul_params,
        "flops_per_token": shape.train_flops_per_token,
        "max_logit_difference": logit_diff,
        "first_step_loss": first_loss,
        "sides": sides,
        "speedup_vs_hf": speedup(sides, "glassformer", "hf_gpt2"),
    }


def steps_per_sample(shape: Shape) -> int:
    """Training steps per timed sample: about 2e10 FLOPs (a second or so on one core), at most 20."""
    return min(20, max(1, round(2e10 / (shape.train_flops_per_token * shape.tokens_per_batch))))


def to_markdown(results: dict) -> str:
    rows = []
    for r in results["shapes"]:
        for side, s in r["sides"].items():
            mem = s.get("memory", {}).get("peak_rss_growth_mb")
            rows.append([
                r["shape"]["name"],
                side,
                f"{s['tokens_per_s']:,.0f}",
                f"{s['mfu']:.1%}",
                f"{s['timing']['spread']:.1%}",
                f"{mem:,.0f}" if mem is not None else "-",
                f"{speedup(r['sides'], side, 'hf_gpt2'):.2f}x",
            ])
    peak = results["peak"]
    lines = [
        "# Training throughput: glassformer vs HF GPT-2 (same shape, batch, weights, loop)",
        "",
        f"{machine_line(results['machine'])} Measured fp32 matmul peak {fmt_si(peak['peak_flops'], 'FLOP/s')}. "
        "Bar: glassformer >= 1.0x HF.",
        "",
        markdown_table(["shape", "side", "tokens/s", "MFU", "noise (IQR/median)", "peak RSS growth (MB)", "vs HF"], rows),
        "",
        "Shapes: " + "; ".join(f"{r['shape']['name']} = {Shape(**r['shape']).describe()} "
                                f"(max |logit diff| {r['max_logit_difference']:.1e})" for r in results["shapes"]),
        "",
        "FLOPs per token = 6 N + 12 n_layers d_model n_ctx (N = matmul parameters incl. W_U); median of "
        f"{results['settings']['repeats']} interleaved samples.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    parser.add_argument("--smoke", action="store_true", help="tiny shape, 2 repeats, no memory probe (for tests)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated subset of {list(SHAPES)}")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    args = parse_options(bench_options(parser, "train", repeats=(9, 5)), argv)

    settings = timing_settings(args, full=9, quick=5)
    if args.smoke:
        shapes, memory = [SMOKE_SHAPE], False
        peak = matmul_peak_flops(sizes=(128,), repeats=2)
    else:
        shapes, memory = [SHAPES[name] for name in args.shapes.split(",")], not args.no_memory
        peak = matmul_peak_flops()
    results = {"machine": machine_info(), "peak": peak, "settings": settings, "shapes": []}
    for shape in shapes:
        n_steps = 1 if args.smoke else steps_per_sample(shape)
        r = bench_shape(shape, **settings, steps_per_sample=n_steps, peak_flops=peak["peak_flops"], memory=memory)
        r["steps_per_sample"] = n_steps
        results["shapes"].append(r)
        gf, hf = r["sides"]["glassformer"], r["sides"]["hf_gpt2"]
        print(f"{shape.name}: glassformer {gf['tokens_per_s']:,.0f} tok/s (MFU {gf['mfu']:.1%}), "
              f"HF {hf['tokens_per_s']:,.0f} tok/s (MFU {hf['mfu']:.1%}) -> {r['speedup_vs_hf']:.2f}x", flush=True)
    save_results("train", results, to_markdown(results), args.results_dir)
    return results


if __name__ == "__main__":
    main()
