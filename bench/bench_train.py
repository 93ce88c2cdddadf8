"""Training throughput: glassformer against the from-scratch GPTs people pick for small models, same shape.

One training step, identical for every side (``bench/peers.py`` builds them):

    logits = model(x)                                   [batch, n_ctx, d_vocab]
    loss   = cross_entropy(logits, y)                   mean over batch * n_ctx targets
    loss.backward(); clip_grad_norm_(params, 1.0)       gradient clipping
    AdamW.step(); zero_grad()                           lr 1e-4, betas (0.9, 0.95), weight decay 0.1 on matrices

Sides: glassformer (nanoGPT's configuration; its hook points in place and idle), nanoGPT's ``model.py``
(``nanogpt_twin.py``, same weights, logits checked), Hugging Face GPT-2 (same weights, logits checked),
litgpt's ``GPT`` and x-transformers' ``TransformerWrapper`` (same shape; optional packages). Each side uses
the AdamW implementation its project sets up (``peers.py``); ``--same-optimizer`` gives every side torch's
fused AdamW instead, to show how much of a lead is the optimizer.

Reported per shape: tokens/s (median over interleaved repeats), the ratio to every peer, achieved GFLOP/s
and MFU = tokens/s * FLOPs-per-token / measured fp32 matmul peak (same thread count; FLOPs formula in
``bench/common.py``), and the peak-RSS growth of a few steps in a fresh process.

    python bench/bench_train.py --threads 2             # the issue's three shapes, both optimizer settings
    python bench/bench_train.py --quick                 # fewer repeats
    python bench/bench_train.py --smoke                 # seconds: tiny shape, results to a temp folder
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
from bench.peers import GPTShape, all_sides, max_logit_difference

SHAPES = {  # the shapes; 65 characters (tiny Shakespeare)
    "small-b32": GPTShape("small-b32", n_layers=4, n_heads=4, d_model=128, n_ctx=64, batch=32),
    "medium": GPTShape("medium", n_layers=6, n_heads=6, d_model=384, n_ctx=256, batch=16),
    "classic": GPTShape("classic", n_layers=4, n_heads=4, d_model=128, n_ctx=64, batch=12),  # nanoGPT's README CPU run
}
SMOKE_SHAPE = GPTShape("smoke", n_layers=1, n_heads=2, d_model=32, n_ctx=16, batch=2, d_vocab=17)
PEERS = ("nanogpt", "hf_gpt2", "litgpt", "x_transformers")


def train_step_fn(side, shape: GPTShape, same_optimizer: bool = False, seed: int = 1):
    """A zero-argument closure that runs one training step of ``side`` on a fixed random batch."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, shape.d_vocab, (shape.batch, shape.n_ctx), generator=g)  # [batch, n_ctx]
    y = torch.randint(0, shape.d_vocab, (shape.batch, shape.n_ctx), generator=g)  # [batch, n_ctx]
    if same_optimizer:
        params = [p for p in side.model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), fused=True)
    else:
        optimizer = side.make_optimizer(1e-4)
    params = list(side.model.parameters())
    side.model.train()

    def step() -> float:
        logits = side.forward(x)  # [batch, n_ctx, d_vocab]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def build_workload(shape: dict, side: str, steps: int = 1):
    """Module-level builder (used in the memory subprocess too): the step closure for one side."""
    shape = GPTShape(**shape)
    step = train_step_fn(all_sides(shape, only={side})[side], shape)

    def run() -> None:
        for _ in range(steps):
            step()

    return run


def bench_shape(shape: GPTShape, *, repeats: int, warmup: int, steps_per_sample: int, peak_flops: float, memory: bool,
                same_optimizer: bool, only: set[str] | None) -> dict:
    sides = all_sides(shape, only=only)
    probe = torch.randint(0, shape.d_vocab, (2, shape.n_ctx))
    logit_diff = {name: max_logit_difference(sides["glassformer"], sides[name], probe)
                  for name in ("nanogpt", "hf_gpt2") if name in sides}
    steps = {name: train_step_fn(side, shape, same_optimizer) for name, side in sides.items()}
    first_loss = {name: step() for name, step in steps.items()}  # twins: equal (same weights, same data)
    timed = throughput(steps, tokens_per_call=shape.tokens_per_batch, calls_per_sample=steps_per_sample, warmup=warmup,
                       repeats=repeats, flops_per_token=shape.train_flops_per_token, peak_flops=peak_flops)
    if memory:
        for name in timed:
            timed[name]["memory"] = peak_memory_cpu(build_workload, {"shape": shape.__dict__, "side": name, "steps": 1}, calls=2)
    peers = [name for name in PEERS if name in timed]
    ratios = {name: speedup(timed, "glassformer", name) for name in peers}
    fastest = max(peers, key=lambda name: timed[name]["tokens_per_s"]) if peers else None
    return {
        "shape": shape.__dict__,
        "flops_per_token": shape.train_flops_per_token,
        "notes": {name: side.note for name, side in sides.items() if side.note},
        "max_logit_difference": logit_diff,
        "first_step_loss": first_loss,
        "sides": timed,
        "speedup": ratios,
        "fastest_peer": fastest,
        "speedup_vs_fastest_peer": ratios[fastest] if fastest else None,
        "speedup_vs_hf": ratios.get("hf_gpt2"),
    }


def steps_per_sample(shape: GPTShape) -> int:
    """Training steps per timed sample: about 2e10 FLOPs (a second or so on one core), at most 20."""
    return min(20, max(1, round(2e10 / (shape.train_flops_per_token * shape.tokens_per_batch))))


def to_markdown(results: dict) -> str:
    lines = [
        "# Training throughput: glassformer vs from-scratch GPTs (same shape, same step)",
        "",
        f"{machine_line(results['machine'])} Measured fp32 matmul peak {fmt_si(results['peak']['peak_flops'], 'FLOP/s')}. "
        f"Median of {results['settings']['repeats']} interleaved samples. Bar: >= 1.1x the fastest peer.",
    ]
    for mode, runs in results["runs"].items():
        lines += ["", f"## Optimizer: {mode}", ""]
        rows = []
        for r in runs:
            for name, s in r["sides"].items():
                mem = s.get("memory", {}).get("peak_rss_growth_mb")
                ratio = "-" if name == "glassformer" else f"{r['speedup'][name]:.2f}x"
                rows.append([GPTShape(**r["shape"]).describe(), name, f"{s['tokens_per_s']:,.0f}",
                             fmt_si(s["flops_per_s"], "FLOP/s"), f"{s['mfu']:.1%}", f"{s['timing']['spread']:.1%}",
                             f"{mem:,.0f}" if mem is not None else "-", ratio])
        lines.append(markdown_table(["shape", "side", "tokens/s", "achieved", "MFU", "noise (IQR/median)",
                                     "peak RSS growth (MB)", "glassformer / side"], rows))
        lines += [""] + [f"- {GPTShape(**r['shape']).describe()}: glassformer / fastest peer ({r['fastest_peer']}) = "
                         f"**{r['speedup_vs_fastest_peer']:.2f}x**; max |logit diff| "
                         + ", ".join(f"{k} {v:.1e}" for k, v in r["max_logit_difference"].items()) for r in runs]
    lines += ["", "Notes: " + "; ".join(sorted({f"{k}: {v}" for r in next(iter(results['runs'].values())) for k, v in r['notes'].items()})),
              "", "FLOPs per token = 6 N + 12 n_layers d_model n_ctx (N = matmul parameters incl. W_U)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--smoke", action="store_true", help="tiny shape, 2 repeats, no memory probe (for tests)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated subset of {list(SHAPES)}")
    parser.add_argument("--sides", default=None, help="comma-separated subset of glassformer," + ",".join(PEERS))
    parser.add_argument("--optimizers", default="own,same", help="own (each project's AdamW), same (all fused), or both")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    args = parse_options(bench_options(parser, "train", repeats=(7, 5)), argv)

    settings = timing_settings(args, full=7, quick=5)
    only = None if args.sides is None else {"glassformer", *args.sides.split(",")}
    if args.smoke:
        shapes, memory, modes = [SMOKE_SHAPE], False, ["own"]
        peak = matmul_peak_flops(sizes=(128,), repeats=2)
    else:
        shapes, memory, modes = [SHAPES[name] for name in args.shapes.split(",")], not args.no_memory, args.optimizers.split(",")
        peak = matmul_peak_flops()
    results = {"machine": machine_info(), "peak": peak, "settings": settings, "runs": {}}
    for mode in modes:
        runs = results["runs"].setdefault(mode, [])
        for shape in shapes:
            n_steps = 1 if args.smoke else steps_per_sample(shape)
            r = bench_shape(shape, **settings, steps_per_sample=n_steps, peak_flops=peak["peak_flops"],
                            memory=memory and mode == "own", same_optimizer=mode == "same", only=only)
            r["steps_per_sample"] = n_steps
            runs.append(r)
            print(f"[{mode}] {shape.describe()}: " + ", ".join(f"{k} {s['tokens_per_s']:,.0f}" for k, s in r["sides"].items())
                  + f" tok/s; glassformer MFU {r['sides']['glassformer']['mfu']:.1%}; vs fastest peer "
                  + (f"({r['fastest_peer']}) {r['speedup_vs_fastest_peer']:.2f}x" if r["fastest_peer"] else "-"), flush=True)
    results["shapes"] = results["runs"][modes[0]]  # (the first mode's runs, under the old key)
    save_results("train", results, to_markdown(results), args.results_dir)
    return results


if __name__ == "__main__":
    main()
