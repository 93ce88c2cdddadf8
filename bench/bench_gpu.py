"""GPU training MFU: a GPT-2-124M-shaped glassformer in bf16, fused attention, torch.compile.

Where ``torch.cuda.is_available()``: trains GPT-2 small's shape (12 layers, d_model 768, 12 heads,
n_ctx 1024, vocabulary 50,304 = 50,257 padded to a multiple of 64) on random tokens with

    bf16 autocast, F.scaled_dot_product_attention (glassformer's fused path: no hook attached),
    torch.compile(model), fused AdamW

and reports tokens/s and MFU against the device's *measured* bf16 matmul peak (goal >= 45%), next to
the HF GPT-2 twin with the same weights and the same loop.

On any machine it also traces a small model with ``torch._dynamo.explain`` and reports its graph breaks
(tracing only: cheap, and deterministic). The model should trace as one graph with no breaks: the token
range check in ``Transformer._check_tokens`` reads a value back to the host, so it is skipped while
compiling.

Without a GPU it prints why it skipped and leaves earlier GPU results in place. ``--smoke`` runs the
same code path on CPU with a tiny shape (no compile by default) so the script is kept working.

    python bench/bench_gpu.py [--batch 16] [--no-compile] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    RESULTS_DIR,
    bench_options,
    fmt_si,
    machine_info,
    markdown_table,
    matmul_peak_flops,
    parse_options,
    peak_memory_cuda,
    save_results,
    throughput,
    timing_settings,
)
from bench.gpt2_twin import Shape, build_pair, glassformer_config
from glassformer import Transformer

GPT2_124M = Shape("gpt2-124M", n_layers=12, d_model=768, n_heads=12, n_ctx=1024, batch=16, d_vocab=50304)
SMOKE = Shape("smoke", n_layers=1, d_model=32, n_heads=2, n_ctx=16, batch=2, d_vocab=64)


def graph_report(model, tokens: torch.Tensor) -> dict:
    """How torch.compile (dynamo) splits one forward: graphs, graph breaks and where they happen."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._logging.set_logs(dynamo=logging.ERROR)  # the breaks are reported below, not as warnings
    explained = torch._dynamo.explain(model)(tokens)
    where = []
    for b in explained.break_reasons:
        frame = b.user_stack[-1] if b.user_stack else None
        where.append(f"{Path(frame.filename).name}:{frame.lineno} {b.reason.splitlines()[0][:80]}" if frame else b.reason[:80])
    torch._dynamo.reset()
    return {"graphs": explained.graph_count, "graph_breaks": explained.graph_break_count, "breaks": sorted(set(where))}


def compile_graphs(shape: Shape) -> dict:
    """Graph breaks of the model as is (tracing only: runs on CPU)."""
    torch.manual_seed(0)
    tokens = torch.randint(0, shape.d_vocab, (shape.batch, shape.n_ctx))
    return {"as_is": graph_report(Transformer(glassformer_config(shape)), tokens)}


def train_step_fn(model, side: str, shape: Shape, device: torch.device, compile: bool, amp_dtype: torch.dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, shape.d_vocab, (shape.batch, shape.n_ctx), generator=g).to(device)  # [batch, n_ctx]
    y = torch.randint(0, shape.d_vocab, (shape.batch, shape.n_ctx), generator=g).to(device)
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=fused or None)
    model.train()
    forward = torch.compile(model) if compile else model

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=amp_dtype):
            out = forward(x) if side == "glassformer" else forward(input_ids=x).logits  # [batch, n_ctx, vocab]
        loss = F.cross_entropy(out.float().reshape(-1, out.shape[-1]), y.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def bench_training(shape: Shape, device: torch.device, *, compile: bool, hf: bool, settings: dict, steps_per_sample: int,
                   peak_flops: float) -> dict:
    """Training tokens/s and MFU of glassformer (and its HF twin) in bf16 autocast; peak memory on CUDA."""
    gf, hf_model = build_pair(shape, device=device)
    models = {"glassformer": gf, "hf_gpt2": hf_model} if hf else {"glassformer": gf}
    steps = {side: train_step_fn(model, side, shape, device, compile, torch.bfloat16) for side, model in models.items()}
    sides = throughput(steps, tokens_per_call=shape.tokens_per_batch, calls_per_sample=steps_per_sample, **settings,
                       device=device, flops_per_token=shape.train_flops_per_token, peak_flops=peak_flops)
    if device.type == "cuda":
        for side in sides:
            sides[side]["memory"] = peak_memory_cuda(steps[side], calls=1)
    return sides


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--smoke", action="store_true", help="tiny shape on whatever device there is (for tests)")
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (default 16)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--compile", action="store_true", help="compile even in --smoke mode")
    parser.add_argument("--no-hf", action="store_true", help="glassformer only")
    args = parse_options(bench_options(parser, "gpu"), argv)
    cuda = torch.cuda.is_available()
    graphs = compile_graphs(Shape("graphs", n_layers=2, d_model=64, n_heads=4, n_ctx=32, batch=2, d_vocab=64))
    print(f"torch.compile graphs of a 2-layer model: {graphs['as_is']['graphs']} graphs / "
          f"{graphs['as_is']['graph_breaks']} breaks", flush=True)
    if not cuda and not args.smoke:
        reason = "skipped: no CUDA device (torch.cuda.is_available() is False); run this on a GPU machine"
        print(reason)
        out = args.results_dir or RESULTS_DIR
        if not (out / "core_gpu.json").exists() or "skipped" in json.loads((out / "core_gpu.json").read_text()):
            md = f"# GPU training MFU\n\n{reason}.\n\n{graphs_markdown(graphs)}"
            save_results("gpu", {"skipped": reason, "machine": machine_info(), "compile_graphs": graphs}, md, args.results_dir)
        return {"skipped": reason, "compile_graphs": graphs}
    device = torch.device("cuda" if cuda else "cpu")
    shape = SMOKE if args.smoke else GPT2_124M
    if args.batch:
        shape = Shape(**{**shape.__dict__, "batch": args.batch})
    compile = (not args.no_compile) and (args.compile or not args.smoke)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak = matmul_peak_flops(torch.bfloat16, device, sizes=(128,) if args.smoke else None, repeats=2 if args.smoke else 5)
    settings = timing_settings(args, full=10, quick=5, warmup=3)  # the first calls compile
    steps_per_sample = 1 if args.smoke else 10
    results = {"machine": machine_info(), "peak": peak, "shape": shape.__dict__, "compile": compile, "dtype": "bfloat16",
               "flops_per_token": shape.train_flops_per_token, "steps_per_sample": steps_per_sample, "compile_graphs": graphs}
    results["sides"] = bench_training(shape, device, compile=compile, hf=not args.no_hf, settings=settings,
                                      steps_per_sample=steps_per_sample, peak_flops=peak["peak_flops"])
    for side, s in results["sides"].items():
        print(f"{side}: {s['tokens_per_s']:,.0f} tokens/s, MFU {s['mfu']:.1%}", flush=True)
    save_results("gpu", results, to_markdown(results), args.results_dir)
    return results


def to_markdown(results: dict) -> str:
    rows = [[side, f"{s['tokens_per_s']:,.0f}", f"{s['mfu']:.1%}", f"{s['timing']['spread']:.1%}",
             f"{s['memory']['peak_allocated_mb']:,.0f}" if "memory" in s else "-"] for side, s in results["sides"].items()]
    return "\n".join([
        "# GPU training MFU (bf16 autocast, fused attention, torch.compile)" if results["compile"] else "# GPU training MFU (no compile)",
        "",
        f"Device: {results['machine']['cuda'] or 'cpu (smoke)'}; measured bf16 matmul peak "
        f"{fmt_si(results['peak']['peak_flops'], 'FLOP/s')}; shape {Shape(**results['shape']).describe()}. "
        "Goal: glassformer MFU >= 45%.",
        "",
        markdown_table(["side", "tokens/s", "MFU", "noise (IQR/median)", "peak allocated (MB)"], rows),
        "",
        graphs_markdown(results["compile_graphs"]),
    ])


def graphs_markdown(graphs: dict) -> str:
    rows = [[name, g["graphs"], g["graph_breaks"], "; ".join(g["breaks"]) or "-"] for name, g in graphs.items()]
    return "\n".join([
        "## torch.compile graph breaks (2-layer decoder, traced on this machine)",
        "",
        markdown_table(["model", "graphs", "graph breaks", "where"], rows),
    ])


if __name__ == "__main__":
    main()
