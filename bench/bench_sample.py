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

from dataclasses import replace

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    bench_options,
    machine_info,
    machine_line,
    markdown_table,
    parse_options,
    save_results,
    speedup,
    throughput,
    timing_settings,
)
from bench.gpt2_twin import Shape, build_pair
from glassformer import Transformer

# (shape incl. batch, prompt length, new tokens, also time the uncached run): the training bench's shapes.
CASES = [
    (Shape("gpt-small", n_layers=4, d_model=256, n_heads=4, n_ctx=256, batch=1, d_vocab=256), 16, 240, False),
    (Shape("gpt-small", n_layers=4, d_model=256, n_heads=4, n_ctx=256, batch=16, d_vocab=256), 16, 112, False),
    (Shape("nanogpt-cpu", n_layers=4, d_model=128, n_heads=4, n_ctx=64, batch=1, d_vocab=65), 8, 56, True),
]
SMOKE_CASES = [(Shape("smoke", n_layers=1, d_model=32, n_heads=2, n_ctx=16, batch=2, d_vocab=17), 4, 8, True)]

# Against a GPT without a KV cache (nanoGPT's generate, same weights): batch 1, 8 + 200 tokens inside the window,
# and past it (n_ctx 64): glassformer with RoPE rolls its cache, nanoGPT (learned positions) re-runs the window.
# (name, n_layers, n_heads, d_model, n_ctx, prompt, new); bars 3x (small) and 8x (6L/384) inside the window.
NOCACHE_CASES = [("small", 4, 4, 128, 256, 8, 200), ("medium", 6, 6, 384, 256, 8, 200), ("small-past-window", 4, 4, 128, 64, 8, 200)]
SMOKE_NOCACHE = [("smoke", 1, 2, 32, 16, 4, 20)]


def bench_nocache_case(name, n_layers, n_heads, d_model, n_ctx, prompt_len, new_tokens, *, repeats: int, warmup: int) -> dict:
    """glassformer generate (KV cache) vs nanoGPT generate (no cache), greedy, same weights where they compute the
    same function (inside the window); past the window glassformer's model uses RoPE (rolling cache)."""
    from bench.nanogpt_twin import build_nanogpt_pair, nanogpt_config

    gf, ng = build_nanogpt_pair(n_layers, d_model, n_heads, n_ctx, 65)
    past = prompt_len + new_tokens > n_ctx
    if past:  # relative positions: decoding goes on from a rolling cache
        gf = Transformer(replace(nanogpt_config(n_layers, d_model, n_heads, n_ctx, 65), positional="rope"))
    gf.eval(), ng.eval()
    prompt = torch.randint(0, 65, (1, prompt_len), generator=torch.Generator().manual_seed(2))
    fns = {"glassformer": lambda: gf.generate(prompt, new_tokens, greedy=True), "nanogpt_no_cache": lambda: ng.generate(prompt, new_tokens)}
    if past:
        fns["glassformer_rerun_window"] = lambda: gf.generate(prompt, new_tokens, greedy=True, use_cache=False)
    same = None if past else bool(torch.equal(fns["glassformer"](), fns["nanogpt_no_cache"]()))
    sides = throughput(fns, tokens_per_call=new_tokens, warmup=warmup, repeats=repeats)
    return {"name": name, "shape": f"{n_layers}L/{n_heads}H/{d_model}, n_ctx {n_ctx}", "prompt_len": prompt_len,
            "new_tokens": new_tokens, "same_tokens": same, "sides": sides,
            "speedup_vs_no_cache": speedup(sides, "glassformer", "nanogpt_no_cache")}


# A dedicated inference engine: CTranslate2 (optional package) on the GPT-2-small shape, random weights, batch 1.
CT2_CASE = (Shape("gpt2-small", n_layers=12, d_model=768, n_heads=12, n_ctx=1024, batch=1, d_vocab=50257), 16, 64)
SMOKE_CT2 = (Shape("smoke", n_layers=1, d_model=32, n_heads=2, n_ctx=64, batch=1, d_vocab=17), 4, 8)


def ctranslate2_generator(gf: Transformer, folder: Path, compute_type: str):
    """``gf`` exported with ``to_hf_gpt2``, converted by CTranslate2's own converter, loaded as a Generator (1 thread).

    The converter reads a tokenizer only for the vocabulary's names; a model with random weights has none, so
    the tokens are named by their ids (<0>, <1>, ...) and the generator is fed those names."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    from glassformer.interop import to_hf_gpt2

    hf_dir, ct2_dir = folder / "hf", folder / f"ct2-{compute_type}"
    if not hf_dir.exists():
        to_hf_gpt2(gf).save_pretrained(hf_dir)

    class NamedIds:  # what the GPT-2 loader asks a tokenizer for
        bos_token = eos_token = unk_token = "<0>"

        def get_vocab(self):
            return {f"<{i}>": i for i in range(gf.config.d_vocab)}

    class Converter(TransformersConverter):
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return NamedIds()

    quantization = None if compute_type == "float32" else compute_type
    Converter(str(hf_dir)).convert(str(ct2_dir), quantization=quantization, force=True)
    return ctranslate2.Generator(str(ct2_dir), device="cpu", compute_type=compute_type, intra_threads=torch.get_num_threads(),
                                 inter_threads=1)


def bench_ctranslate2_case(shape: Shape, prompt_len: int, new_tokens: int, *, repeats: int, warmup: int) -> dict:
    """glassformer ``generate`` vs CTranslate2 ``generate_batch`` (greedy, same weights, fp32; int8 as an extra)."""
    import tempfile

    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return {"skipped": "ctranslate2 is not installed (pip install -e '.[bench]')"}
    from bench.gpt2_twin import glassformer_config

    torch.manual_seed(0)
    gf = Transformer(glassformer_config(shape)).eval()
    prompt = torch.randint(0, shape.d_vocab, (1, prompt_len), generator=torch.Generator().manual_seed(2))
    names = [f"<{int(t)}>" for t in prompt[0]]
    with tempfile.TemporaryDirectory() as folder:
        generators = {ct: ctranslate2_generator(gf, Path(folder), ct) for ct in ("float32", "int8")}

    def ct2(compute_type: str):
        def run() -> list[int]:
            out = generators[compute_type].generate_batch([names], max_length=new_tokens, min_length=new_tokens, sampling_topk=1,
                                                          include_prompt_in_result=False, end_token=[])
            return out[0].sequences_ids[0]
        return run

    fns = {"glassformer": lambda: gf.generate(prompt, new_tokens, greedy=True)[0, prompt_len:].tolist(),
           "ctranslate2_fp32": ct2("float32"), "ctranslate2_int8": ct2("int8")}
    outputs = {name: fn() for name, fn in fns.items()}
    sides = throughput(fns, tokens_per_call=new_tokens, warmup=warmup, repeats=repeats)
    return {"name": shape.name, "shape": f"{shape.n_layers}L/{shape.n_heads}H/{shape.d_model}, vocab {shape.d_vocab}",
            "prompt_len": prompt_len, "new_tokens": new_tokens, "sides": sides,
            "same_tokens": {name: outputs[name] == outputs["glassformer"] for name in fns if name != "glassformer"},
            "tokens_emitted": {name: len(out) for name, out in outputs.items()},
            "speedup_vs_ctranslate2_fp32": speedup(sides, "glassformer", "ctranslate2_fp32"),
            "speedup_vs_ctranslate2_int8": speedup(sides, "glassformer", "ctranslate2_int8")}


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
    sides = throughput(fns, tokens_per_call=shape.batch * new_tokens, warmup=warmup, repeats=repeats)
    return {
        "shape": shape.__dict__,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        **check,
        "sides": sides,
        "speedup_vs_hf": speedup(sides, "glassformer", "hf_generate"),
    }


def to_markdown(results: dict) -> str:
    rows = []
    for r in results["cases"]:
        shape = Shape(**r["shape"])
        for side, s in r["sides"].items():
            rows.append([
                shape.name, shape.batch, f"{r['prompt_len']}+{r['new_tokens']}", side,
                f"{s['tokens_per_s']:,.0f}", f"{s['timing']['spread']:.1%}", f"{speedup(r['sides'], side, 'hf_generate'):.2f}x",
                "yes" if r["same_tokens"] else "NO",
            ])
    return "\n".join([
        "# Sampling with the KV cache: glassformer generate vs HF generate (greedy, same weights)",
        "",
        f"{machine_line(results['machine'])} Bar: glassformer >= 1.5x HF. Median of "
        f"{results['settings']['repeats']} interleaved samples.",
        "",
        markdown_table(["shape", "batch", "prompt+new", "side", "new tokens/s", "noise (IQR/median)", "vs HF", "same tokens"], rows),
        "",
        "## Against a GPT without a KV cache (nanoGPT's generate), batch 1",
        "",
        "Bars inside the window: >= 3x (small), >= 8x (medium). Past the window glassformer's model has RoPE and decodes "
        "from a rolling cache; nanoGPT (learned positions) re-runs the last n_ctx tokens every step.",
        "",
        markdown_table(["case", "shape", "prompt+new", "side", "new tokens/s", "noise", "glassformer / side", "same tokens"],
                       [[r["name"], r["shape"], f"{r['prompt_len']}+{r['new_tokens']}", side, f"{s['tokens_per_s']:,.0f}",
                         f"{s['timing']['spread']:.1%}", f"{speedup(r['sides'], 'glassformer', side):.2f}x",
                         {True: "yes", False: "NO", None: "- (RoPE vs learned)"}[r["same_tokens"]]]
                        for r in results.get("no_cache", []) for side, s in r["sides"].items()]),
        "",
        "## Against a dedicated inference engine (CTranslate2), batch 1, random weights",
        "",
        ctranslate2_markdown(results.get("ctranslate2")),
    ])


def ctranslate2_markdown(r: dict | None) -> str:
    if not r:
        return "Not run."
    if "skipped" in r:
        return f"Skipped: {r['skipped']}."
    rows = [[r["name"], r["shape"], f"{r['prompt_len']}+{r['new_tokens']}", side, f"{s['tokens_per_s']:,.1f}",
             f"{s['timing']['spread']:.1%}", f"{speedup(r['sides'], 'glassformer', side):.2f}x",
             "-" if side == "glassformer" else ("yes" if r["same_tokens"][side] else "NO")] for side, s in r["sides"].items()]
    return ("Bar: glassformer at least on par with CTranslate2 in fp32 (int8 is an extra, a different computation).\n\n"
            + markdown_table(["case", "shape", "prompt+new", "side", "new tokens/s", "noise", "glassformer / side",
                              "same tokens as glassformer"], rows))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 repeats (for tests)")
    parser.add_argument("--only-no-cache", action="store_true", help="only the cases against nanoGPT's no-cache generate")
    parser.add_argument("--only-ctranslate2", action="store_true", help="only the case against CTranslate2")
    parser.add_argument("--no-ctranslate2", action="store_true", help="skip the case against CTranslate2")
    args = parse_options(bench_options(parser, "sample", repeats=(9, 5)), argv)
    settings = timing_settings(args, full=9, quick=5)
    results = {"machine": machine_info(), "settings": settings, "cases": []}
    only = args.only_no_cache or args.only_ctranslate2
    for shape, prompt_len, new_tokens, uncached in SMOKE_CASES if args.smoke else [] if only else CASES:
        r = bench_case(shape, prompt_len, new_tokens, uncached, **settings)
        results["cases"].append(r)
        print(f"{shape.describe()} {prompt_len}+{new_tokens}: " + ", ".join(f"{side} {s['tokens_per_s']:,.0f} tok/s"
              for side, s in r["sides"].items()) + f" -> {r['speedup_vs_hf']:.2f}x HF (same tokens: {r['same_tokens']})", flush=True)
    results["no_cache"] = []
    for case in SMOKE_NOCACHE if args.smoke else [] if args.only_ctranslate2 else NOCACHE_CASES:
        r = bench_nocache_case(*case, **settings)
        results["no_cache"].append(r)
        print(f"{r['name']} ({r['shape']}) {r['prompt_len']}+{r['new_tokens']}: " + ", ".join(
            f"{side} {s['tokens_per_s']:,.0f} tok/s" for side, s in r["sides"].items()) + f" -> {r['speedup_vs_no_cache']:.2f}x", flush=True)
    if not args.no_ctranslate2:
        shape, prompt_len, new_tokens = SMOKE_CT2 if args.smoke else CT2_CASE
        r = results["ctranslate2"] = bench_ctranslate2_case(shape, prompt_len, new_tokens, **settings)
        print("ctranslate2: " + (r["skipped"] if "skipped" in r else ", ".join(
            f"{side} {s['tokens_per_s']:,.1f} tok/s" for side, s in r["sides"].items())
            + f" -> {r['speedup_vs_ctranslate2_fp32']:.2f}x fp32, {r['speedup_vs_ctranslate2_int8']:.2f}x int8; same tokens {r['same_tokens']}"),
            flush=True)
    save_results("sample", results, to_markdown(results), args.results_dir)
    return results


if __name__ == "__main__":
    main()
