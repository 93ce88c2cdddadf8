"""``run_with_cache`` on every hook point, against TransformerLens, and the cost of ``names=`` filtering.

Both sides run the same function: a 4-layer, d_model 128, 4-head, d_mlp 512 GPT-shaped decoder
(pre-LN, learned positions, tanh-GELU, untied W_U, biases) on a batch of 32 x 64 random tokens, with
the same random weights copied from glassformer into TransformerLens's ``HookedTransformer`` (same
parameter names); the bench checks their logits agree before timing anything.

Measured in one run (``bench.common``: interleaved repeats, medians; peak RSS growth in a fresh process):

* time and peak memory of ``run_with_cache`` storing every hook point, glassformer vs TransformerLens
  (each side's default: every hook its forward calls), as ratios (bar: <= 1.0x on both);
* the cost of a forward with ``names=`` filtering vs a plain forward: caching one residual stream should
  cost what it stores and nothing more (the rest of the pass stays fused), while asking for attention
  patterns makes attention run explicitly.

* a layers x positions activation-patching sweep of ``resid_pre`` (every cell one patched run of a batch of 8),
  on the lens shape (4 x 64 = 256 cells) and on a toy model (2 layers, 16 positions): glassformer batched
  (``lens.patch_layers_positions``: many cells per forward) against glassformer one forward per cell
  (``cells_per_forward=1``) and TransformerLens's ``patching.get_act_patch_resid_pre`` (one forward per
  cell); the values are checked to agree first.

TransformerLens is only needed here: ``pip install "transformer-lens>=3,<4"`` (3.x still has
``HookedTransformer``). Without it the bench still measures the ``names=`` costs.

    python bench/bench_lens.py [--quick | --smoke] [--threads N] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS_DIR, _jsonable, interleaved, machine_info, markdown_table, peak_memory_cpu
from glassformer import ModelConfig, Transformer


@dataclass
class Shape:
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = 64
    batch: int = 32
    d_vocab: int = 512


FULL, SMOKE = Shape(), Shape(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=8, batch=2, d_vocab=17)
FILTERS = {  # the names= filters timed against a plain forward
    "one residual stream": ["blocks.{last}.resid_post"],
    "every resid_post": ["blocks.*.resid_post"],
    "every attention pattern": ["blocks.*.attn.pattern"],
}


def glassformer_model(shape: Shape) -> Transformer:
    torch.manual_seed(0)
    config = ModelConfig(arch="decoder", d_model=shape.d_model, n_layers=shape.n_layers, n_heads=shape.n_heads,
                         d_mlp=shape.d_mlp, d_vocab=shape.d_vocab, n_ctx=shape.n_ctx, act="gelu_tanh",
                         norm="layernorm", positional="learned", tie_embeddings=False)
    return Transformer(config).eval()


def tl_model(shape: Shape, weights: dict[str, torch.Tensor]):
    """TransformerLens's HookedTransformer of the same shape, holding glassformer's weights."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    config = HookedTransformerConfig(
        n_layers=shape.n_layers, d_model=shape.d_model, n_heads=shape.n_heads, d_head=shape.d_model // shape.n_heads,
        d_mlp=shape.d_mlp, n_ctx=shape.n_ctx, d_vocab=shape.d_vocab, act_fn="gelu_new", normalization_type="LN",
        positional_embedding_type="standard", device="cpu", seed=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HookedTransformer's deprecation notice in 3.x
        model = HookedTransformer(config)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith(("mask", "IGNORE"))]  # TL's buffers
    if missing or unexpected:
        raise RuntimeError(f"weights do not map onto TransformerLens: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def tokens_for(shape: Shape) -> torch.Tensor:
    return torch.randint(0, shape.d_vocab, (shape.batch, shape.n_ctx), generator=torch.Generator().manual_seed(3))


def build(side: str, what: str, shape: dict) -> callable:
    """The zero-argument workload ``side`` / ``what`` (module level, so a fresh process can build it)."""
    s = Shape(**shape)
    model = glassformer_model(s)
    tokens = tokens_for(s)
    if side == "transformer_lens":
        model = tl_model(s, model.state_dict())
        if what == "forward":
            return lambda: _no_grad(model, tokens)
        return lambda: _no_grad(model.run_with_cache, tokens)
    if what == "forward":
        return lambda: _no_grad(model, tokens)
    names = None if what == "cache all" else [n.format(last=s.n_layers - 1) for n in FILTERS[what]]
    return lambda: _no_grad(model.run_with_cache, tokens, names=names)


PATCH_SHAPES = {  # the patching sweep runs on the lens shape and on a toy model, each with a batch of 8
    "lens shape": dict(batch=8),
    "toy: 2 layers, d_model 64, 16 positions": dict(n_layers=2, d_model=64, d_mlp=256, n_ctx=16, batch=8, d_vocab=64),
}


def patching_workloads(shape: Shape, have_tl: bool) -> tuple[dict, dict]:
    """The patching sweep's candidates, and the largest disagreement of their values (checked before timing)."""
    from glassformer import lens

    s = shape
    model = glassformer_model(s)
    clean = tokens_for(s)
    corrupted = clean.clone()
    corrupted[:, s.n_ctx // 2] = (corrupted[:, s.n_ctx // 2] + 1) % s.d_vocab  # one changed token per row
    answer = clean[:, -1]

    def metric(logits):  # the mean logit of the clean last token at the last position
        return logits[torch.arange(logits.shape[0]), -1, answer[: logits.shape[0]]].mean()

    candidates = {
        "glassformer patching, batched": lambda: lens.patch_layers_positions(model, clean, corrupted, metric, normalize=False).values,
        "glassformer patching, one forward per cell": lambda: lens.patch_layers_positions(
            model, clean, corrupted, metric, normalize=False, cells_per_forward=1).values,
    }
    if have_tl:
        from transformer_lens import patching

        tl = tl_model(s, model.state_dict())
        with torch.no_grad():
            _, tl_cache = tl.run_with_cache(clean)

        def tl_sweep():
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return patching.get_act_patch_resid_pre(tl, corrupted, tl_cache, metric)

        candidates["transformer_lens patching (get_act_patch_resid_pre)"] = tl_sweep
    values = {name: fn() for name, fn in candidates.items()}
    first = values["glassformer patching, batched"]
    check = {name: float((v - first).abs().max()) for name, v in values.items()}
    if max(check.values()) > 1e-3:
        raise RuntimeError(f"the patching sweeps disagree: {check}")
    return candidates, {"cells": int(first.numel()), "batch": s.batch, "max_difference": max(check.values())}


def _no_grad(fn, *args, **kwargs):
    with torch.no_grad():
        return fn(*args, **kwargs)


def peak_memory_runs(side: str, what: str, shape: Shape, repeats: int) -> dict:
    """Peak RSS growth of the workload in ``repeats`` fresh processes: the median, and every run (the heap's
    layout, hence the peak, varies from process to process)."""
    runs = [peak_memory_cpu(build, {"side": side, "what": what, "shape": asdict(shape)}) for _ in range(repeats)]
    errors = [r for r in runs if "error" in r]
    if errors:
        return errors[0]
    growth = sorted(r["peak_rss_growth_mb"] for r in runs)
    return {"peak_rss_growth_mb": growth[len(growth) // 2], "runs_mb": [round(g, 1) for g in growth]}


def cache_size(cache) -> tuple[int, float]:
    """(activations stored, MB they hold)."""
    tensors = list(cache.values())
    return len(tensors), sum(t.numel() * t.element_size() for t in tensors) / 2**20


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--smoke", action="store_true", help="a tiny shape, seconds (what the smoke test runs)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where lens_cache.{json,md} go")
    parser.add_argument("--memory-repeats", type=int, default=5, help="fresh processes per peak-memory case (median)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = SMOKE if args.smoke else FULL
    repeats, warmup = (3, 1) if args.smoke else ((7, 2) if args.quick else (15, 3))
    try:
        import transformer_lens  # noqa: F401

        have_tl = True
    except ImportError:
        have_tl = False

    model, tokens = glassformer_model(shape), tokens_for(shape)
    candidates = {"glassformer forward": build("glassformer", "forward", asdict(shape)),
                  "glassformer cache all": build("glassformer", "cache all", asdict(shape))}
    for what in FILTERS:
        candidates[f"glassformer names={what}"] = build("glassformer", what, asdict(shape))
    result: dict = {"machine": machine_info(), "shape": asdict(shape), "transformer_lens": have_tl}
    _, cache = candidates["glassformer cache all"]()
    result["glassformer_cache"] = dict(zip(("activations", "mb"), cache_size(cache)))
    if have_tl:
        tl = tl_model(shape, model.state_dict())
        with torch.no_grad():
            difference = (tl(tokens) - model(tokens)).abs().max().item()
            _, tl_cache = tl.run_with_cache(tokens)
        if difference > 1e-4:
            raise RuntimeError(f"TransformerLens and glassformer disagree by {difference} logits: not the same function")
        result["max_logit_difference"] = difference
        result["transformer_lens_cache"] = dict(zip(("activations", "mb"), cache_size(tl_cache)))
        candidates["transformer_lens forward"] = build("transformer_lens", "forward", asdict(shape))
        candidates["transformer_lens cache all"] = build("transformer_lens", "cache all", asdict(shape))

    timings = interleaved(candidates, warmup=warmup, repeats=repeats)
    result["timings"] = timings
    result["patching"] = {}
    for label, overrides in PATCH_SHAPES.items():
        s = Shape(**{**asdict(shape), **overrides}) if not args.smoke else Shape(**asdict(shape))
        candidates_p, info = patching_workloads(s, have_tl)
        pt = interleaved(candidates_p, warmup=1, repeats=max(3, repeats // 3))
        info.update(timings=pt, shape=asdict(s), speedup=pt["glassformer patching, one forward per cell"].median
                    / pt["glassformer patching, batched"].median)
        if have_tl:
            info["speedup_vs_tl"] = pt["transformer_lens patching (get_act_patch_resid_pre)"].median / pt["glassformer patching, batched"].median
        result["patching"][label] = info
    plain = timings["glassformer forward"].median
    result["names_cost"] = {what: timings[f"glassformer names={what}"].median / plain for what in FILTERS}
    result["cache_all_cost"] = timings["glassformer cache all"].median / plain
    memory_cases = [("glassformer", "forward"), ("glassformer", "cache all"), ("glassformer", "one residual stream")]
    if have_tl:
        memory_cases += [("transformer_lens", "forward"), ("transformer_lens", "cache all")]
        result["time_ratio_vs_tl"] = timings["glassformer cache all"].median / timings["transformer_lens cache all"].median
        result["forward_time_ratio_vs_tl"] = plain / timings["transformer_lens forward"].median
    memory_repeats = 1 if args.smoke else args.memory_repeats
    result["memory_repeats"] = memory_repeats
    result["memory"] = {f"{side} {what}": peak_memory_runs(side, what, shape, memory_repeats) for side, what in memory_cases}
    # The same with glibc returning every allocation over 64 KiB to the system when freed: the peak then
    # follows the live tensors instead of how the allocator's heap happened to fragment.
    previous = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"  # read by glibc when each spawned child starts
    try:
        result["memory_mmap"] = {f"{side} {what}": peak_memory_runs(side, what, shape, memory_repeats)
                                 for side, what in memory_cases if what != "one residual stream"}
    finally:
        if previous is None:
            del os.environ["MALLOC_MMAP_THRESHOLD_"]
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = previous
    if have_tl:
        for key, suffix in (("memory", ""), ("memory_mmap", "_mmap")):
            gf, tl_mem = result[key]["glassformer cache all"], result[key]["transformer_lens cache all"]
            if "error" not in gf and "error" not in tl_mem:
                result[f"memory_ratio_vs_tl{suffix}"] = gf["peak_rss_growth_mb"] / max(tl_mem["peak_rss_growth_mb"], 1e-9)
    write(result, args.results_dir)
    return result


def write(result: dict, results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "lens_cache.json").write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    (results_dir / "lens_cache.md").write_text(to_markdown(result) + "\n")


def _mb(mem: dict) -> str:
    """'108 MB (108-115)': the median over fresh processes and their range."""
    if "peak_rss_growth_mb" not in mem:
        return "-"
    runs = mem.get("runs_mb", [])
    spread = f" ({min(runs):.0f}-{max(runs):.0f})" if len(runs) > 1 else ""
    return f"{mem['peak_rss_growth_mb']:.0f} MB{spread}"


def to_markdown(r: dict) -> str:
    s, m = Shape(**r["shape"]), r["machine"]
    rows = []
    for name, timing in r["timings"].items():
        mem = r["memory"].get(name.replace(" names=", " "), {})
        mmap = r.get("memory_mmap", {}).get(name.replace(" names=", " "), {})
        rows.append([name, f"{timing.median * 1e3:.3g} ms", f"{timing.spread:.0%}",
                     _mb(mem), _mb(mmap)])
    lines = [
        "# run_with_cache: glassformer vs TransformerLens, and names= filtering",
        "",
        f"Shape: {s.n_layers} layers, d_model {s.d_model}, {s.n_heads} heads, d_mlp {s.d_mlp}, batch {s.batch} x {s.n_ctx} "
        f"tokens, d_vocab {s.d_vocab}, random weights (the same on both sides). Machine: {m['cpu']} "
        f"({m['torch_threads']} threads), torch {m['torch']}, load average {m['load_average_1m']:.1f} at start.",
        "",
        markdown_table(["workload", "median time", "noise (IQR/median)",
                        f"peak RSS growth, median (range) of {r.get('memory_repeats', 1)} processes",
                        "the same, MALLOC_MMAP_THRESHOLD_=65536"], rows),
        "",
    ]
    if r.get("memory_note"):
        lines += [f"Peak memory: {r['memory_note']}.", ""]
    g = r["glassformer_cache"]
    lines.append(f"glassformer's full cache: {g['activations']} activations, {g['mb']:.0f} MB.")
    if r["transformer_lens"]:
        t = r["transformer_lens_cache"]
        lines += [
            f"TransformerLens's full cache: {t['activations']} activations, {t['mb']:.0f} MB "
            f"(logits agree to {r['max_logit_difference']:.1e}).",
            "",
            f"**run_with_cache, every hook point: glassformer / TransformerLens = {r['time_ratio_vs_tl']:.2f}x time, "
            f"{r.get('memory_ratio_vs_tl', float('nan')):.2f}x peak memory** (medians; bar: <= 1.0x); with glibc returning "
            f"large blocks at free (the live tensors, without heap fragmentation): "
            f"{r.get('memory_ratio_vs_tl_mmap', float('nan')):.2f}x. Plain forward: {r['forward_time_ratio_vs_tl']:.2f}x time.",
            "",
            "Where the peak came from (it was 1.04-1.28x TransformerLens's): not from what is cached (98 vs 100 MB) "
            "but from freed temporaries left between the cached tensors in glibc's heap. LayerNorm, when hooked, "
            "computed its equation in four steps, each a freed tensor of the residual's size (36 per pass here), and "
            "explicit attention copied q, k and v into head-major order for its einsums. Now a hooked LayerNorm "
            "computes its scale beside the fused kernel's output (the equation still runs when a hook replaces the "
            "scale or a gradient flows through it), and explicit attention multiplies each head's strided views, "
            "writing into one result, with scale, bias and mask applied in place: bytes allocated per cached pass "
            "went from 1.82x to 1.20x of what is stored (tests/lens/test_cache_memory.py).",
        ]
    costs = ", ".join(f"{what}: {cost:.2f}x" for what, cost in r["names_cost"].items())
    lines += ["", f"Forward with names= filtering, relative to a plain forward: {costs}; every hook point: "
              f"{r['cache_all_cost']:.2f}x. Caching residual streams costs what storing them costs; asking for "
              "attention patterns makes attention run explicitly (no fused kernel), which is the price of materialising them."]
    if r.get("patching"):
        lines += ["", "## Activation patching: a layers x positions sweep of resid_pre", "",
                  "Every (layer, position) cell patched on its own. glassformer batched: many cells per forward, each "
                  "forward starting at the first block its cells touch; one forward per cell: `cells_per_forward=1` "
                  "(still starting late); TransformerLens: `patching.get_act_patch_resid_pre` (one full forward per cell)."]
        for label, p in r["patching"].items():
            ps = Shape(**p["shape"])
            rows_p = [[name, f"{t.median * 1e3:.4g} ms", f"{t.spread:.0%}"] for name, t in p["timings"].items()]
            vs_tl = f", **{p['speedup_vs_tl']:.1f}x** faster than TransformerLens's" if "speedup_vs_tl" in p else ""
            lines += ["", f"**{label}** ({ps.n_layers} layers, d_model {ps.d_model}, {ps.n_ctx} positions, batch {ps.batch}: "
                      f"{p['cells']} cells)", "", markdown_table(["sweep", "median time", "noise (IQR/median)"], rows_p), "",
                      f"Batched: **{p['speedup']:.1f}x** faster than one forward per cell{vs_tl}; the values agree to "
                      f"{p['max_difference']:.1e}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
