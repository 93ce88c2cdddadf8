"""Sampling throughput with the KV cache: glassformer ``model.generate`` vs Hugging Face ``generate``.

Both sides decode greedily with their key/value cache from the same prompt with the same weights (a
GPT-2-shaped glassformer model whose weights are copied into ``GPT2LMHeadModel``), so they must emit the
same tokens; the bench checks that they do. Tokens/s counts new tokens: batch * max_new_tokens / time.

    glassformer:  model.generate(prompt, max_new_tokens, greedy=True)              (use_cache=True)
    HF:           model.generate(prompt, attention_mask=ones, max_new_tokens=..., do_sample=False, use_cache=True)

HF's generation config is set so it never stops early (no eos), which keeps the work identical.
For reference the glassformer run without the cache (re-running the whole prefix each step) is timed
too. The bar: glassformer with the cache >= 1.5x HF.

    python bench/bench_sample.py [--quick | --smoke]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import interleaved, machine_info, markdown_table, write_results
from bench.gpt2_twin import Shape, build_pair

# (shape incl. batch, prompt length, new tokens, also time the uncached run): the training bench's shapes.
CASES = [
    (Shape("gpt-small", n_layers=4, d_model=256, n_heads=4, n_ctx=256, batch=1, d_vocab=256), 16, 240, False),
    (Shape("gpt-small", n_layers=4, d_model=256, n_heads=4, n_ctx=256, batch=16, d_vocab=256), 16, 112, False),
    (Shape("nanogpt-cpu", n_layers=4, d_model=128, n_heads=4, n_ctx=64, batch=1, d_vocab=65), 8, 56, True),
]
SMOKE_CASES = [(Shape("smoke", n_layers=1, d_model=32, n_heads=2, n_ctx=16, batch=2, d_vocab=17), 4, 8, True)]


def sample_fns(shape: Shape, prompt_len: int, new_tokens: int, *, with_uncached: bool):
    """Zero-argument closures for each side, plus a check that they emit the same tokens."""
    gf, hf = build_pair(shape)
    gf.eval(), hf.eval()
    hf.generation_config.eos_token_id = None  # never stop early: both sides do exactly new_tokens steps
    hf.generation_config.pad_token_id = 0
    g = torch.Generator().manual_seed(2)
    prompt = torch.randint(0, shape.d_vocab, (shape.batch, prompt_len), generator=g)  # [batch, prompt_len]
    mask = torch.ones_like(prompt)

    def glassformer(use_cache: bool = True) -> torch.Tensor:
        return gf.generate(prompt, new_tokens, greedy=True, use_cache=use_cache)  # [batch, prompt + new]

    @torch.no_grad()
    def hf_generate() -> torch.Tensor:
        return hf.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False, use_cache=True)

    out_gf, out_hf = glassformer(), hf_generate()
    same = out_gf.shape == out_hf.shape and bool((out_gf == out_hf).all())
    fns = {"glassformer": glassformer, "hf_generate": hf_generate}
    if with_uncached:
        fns["glassformer_no_cache"] = lambda: glassformer(use_cache=False)
    return fns, {"same_tokens": same, "tokens_gf": out_gf.shape[1], "tokens_hf": out_hf.shape[1]}


def bench_case(shape: Shape, prompt_len: int, new_tokens: int, uncached: bool, *, repeats: int, warmup: int) -> dict:
    fns, check = sample_fns(shape, prompt_len, new_tokens, with_uncached=uncached)
    timings = interleaved(fns, warmup=warmup, repeats=repeats)
    sides = {}
    for side, t in timings.items():
        sides[side] = {"timing": t.summary(), "tokens_per_s": shape.batch * new_tokens / t.median}
    return {
        "shape": shape.__dict__,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        **check,
        "sides": sides,
        "speedup_vs_hf": sides["glassformer"]["tokens_per_s"] / sides["hf_generate"]["tokens_per_s"],
    }


def to_markdown(results: dict) -> str:
    rows = []
    for r in results["cases"]:
        shape = Shape(**r["shape"])
        for side, s in r["sides"].items():
            ratio = s["tokens_per_s"] / r["sides"]["hf_generate"]["tokens_per_s"]
            rows.append([
                shape.name, shape.batch, f"{r['prompt_len']}+{r['new_tokens']}", side,
                f"{s['tokens_per_s']:,.0f}", f"{s['timing']['spread']:.1%}", f"{ratio:.2f}x", "yes" if r["same_tokens"] else "NO",
            ])
    m = results["machine"]
    return "\n".join([
        "# Sampling with the KV cache: glassformer generate vs HF generate (greedy, same weights)",
        "",
        f"Machine: {m['cpu']} ({m['torch_threads']} threads), torch {m['torch']}, transformers {m.get('transformers')}, "
        f"load average {m['load_average_1m']:.1f} at start. Bar: glassformer >= 1.5x HF. Median of "
        f"{results['settings']['repeats']} interleaved samples.",
        "",
        markdown_table(["shape", "batch", "prompt+new", "side", "new tokens/s", "noise (IQR/median)", "vs HF", "same tokens"], rows),
    ])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 repeats (for tests)")
    parser.add_argument("--repeats", type=int, default=None, help="timed samples per side (default 9, quick 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where to write core_sample.{json,md}")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = SMOKE_CASES if args.smoke else CASES
    repeats = 2 if args.smoke else args.repeats or (5 if args.quick else 9)
    warmup = 1 if args.smoke else 2
    results = {"machine": machine_info(), "settings": {"repeats": repeats, "warmup": warmup}, "cases": []}
    for shape, prompt_len, new_tokens, uncached in cases:
        r = bench_case(shape, prompt_len, new_tokens, uncached, repeats=repeats, warmup=warmup)
        results["cases"].append(r)
        print(f"{shape.describe()} {prompt_len}+{new_tokens}: " + ", ".join(f"{side} {s['tokens_per_s']:,.0f} tok/s"
              for side, s in r["sides"].items()) + f" -> {r['speedup_vs_hf']:.2f}x HF (same tokens: {r['same_tokens']})", flush=True)
    results["machine"]["load_average_1m_end"] = machine_info()["load_average_1m"]
    path = write_results("sample", results, to_markdown(results), args.results_dir)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
