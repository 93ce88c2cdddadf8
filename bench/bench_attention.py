"""Attention patterns and positional schemes: what each one costs, and what each one can still do.

Three measurements in one run:

1. **Cost** -- time and peak memory of one attention layer's forward pass (batch 1, d_model 128, 4 heads,
   no gradient) against sequence length 128 .. 8192, for every ``attention`` pattern: full attention as
   the fused kernel (``F.scaled_dot_product_attention``) and as the explicit equations (what a hook on
   ``attn.pattern`` runs: the [pos, pos] matrix exists), sliding window (w = 128), Sparse Transformer
   strided and fixed (l = round(sqrt(pos)), c = 4), linear (elu + 1) and Linformer (k = 128;
   bidirectional, the others causal). Time is the median of interleaved repeats (``common.interleaved``);
   memory is the growth of peak RSS in a fresh process (``common.peak_memory_cpu``). The slope of
   log(cost) against log(pos) between the two longest lengths is reported as the empirical exponent
   (2 = quadratic, 1 = linear). One torch thread by default (``--threads``): on a shared 2-core machine
   two threads that wait on each other make every number noisy.
2. **Quality on a long-range task** -- "recall": a sequence of 128 tokens whose first token (a payload
   letter) must be named at the last position, everything between being filler (for the encoder the
   payload is last and the class token first). The answer is 127 positions away. Each pattern trains the
   same 2-layer model (d_model 32) with the core trainer for the same small budget; accuracy on fresh
   examples (chance 1/8). A sliding window of 16 over 2 layers reaches 30 positions back: it cannot.
3. **Extrapolation** -- a character-level decoder on Shakespeare (tiny.txt) trained on 64-character
   windows with each positional scheme, then evaluated on longer windows of held-out text: the loss on
   the last 64 positions of windows of 64 .. 512 characters. Learned positions stop at n_ctx.

    python bench/bench_attention.py [--quick | --smoke] [--results-dir DIR]

Writes ``attention_cost.{json,md,png}``, ``attention_quality.{json,md}``,
``attention_extrapolation.{json,md,png}`` and ``attention_summary.md`` under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS_DIR, SHAKESPEARE_DIR, interleaved, machine_info, markdown_table, peak_memory_cpu
from glassformer import ModelConfig, Transformer
from glassformer.train.batch import Batch
from glassformer.train.trainer import TrainConfig, Trainer

D_MODEL, N_HEADS = 128, 4
EXPLICIT_MAX_POS = 4096  # the explicit path's [heads, pos, pos] matrices pass 1 GiB beyond this
COST_VARIANTS = {  # name -> ModelConfig fields (n_ctx is set to the sequence length)
    "full (fused)": {},
    "full (explicit)": {},  # the same module with a no-op hook on attn.pattern
    "sliding w=128": dict(attention="sliding", window=128),
    "sparse strided": dict(attention="sparse"),
    "sparse fixed": dict(attention="sparse", sparse_pattern="fixed", sparse_summary=4),
    "linear": dict(attention="linear"),
    "linformer k=128": dict(arch="encoder", attention="linformer", linformer_k=128),
}


# --- 1. cost ----------------------------------------------------------------------------------------


def build_attention_workload(variant: str, n: int):
    """One attention layer of ``variant`` at ``n`` positions and its input; returns the forward as a thunk."""
    torch.manual_seed(0)
    fields = dict(COST_VARIANTS[variant])
    arch = fields.pop("arch", "decoder")
    if variant.startswith("sparse"):
        fields["sparse_summary"] = min(fields.get("sparse_summary", 1), round(math.sqrt(n)))
    cfg = ModelConfig(arch=arch, d_model=D_MODEL, n_heads=N_HEADS, n_layers=1, d_vocab=8, n_ctx=n, positional="rope", **fields)
    attn = Transformer(cfg).blocks[0].attn.eval()
    if variant == "full (explicit)":
        attn.pattern.fns.append(lambda pattern, hook: None)  # watching the pattern forces the explicit path
    x = torch.randn(1, n, D_MODEL)  # [batch, pos, d_model]
    positions = torch.arange(n)

    def forward():
        with torch.no_grad():
            return attn(x, positions=positions)

    return forward


def measure_cost(lengths: list[int], repeats: int, memory_lengths: list[int]) -> dict:
    """{variant: {"by_length": {n: {time_ms, spread, peak_mb}}, "exponent": {time_ms, peak_mb}}}"""
    results: dict = {name: {"by_length": {}, "exponent": {}} for name in COST_VARIANTS}
    for n in lengths:
        names = [v for v in COST_VARIANTS if not (v == "full (explicit)" and n > EXPLICIT_MAX_POS)]
        timings = interleaved({v: build_attention_workload(v, n) for v in names}, warmup=1, repeats=repeats)
        for v in names:
            row = results[v]["by_length"][n] = {"time_ms": 1e3 * timings[v].median, "spread": timings[v].spread}
            if n in memory_lengths:
                memory = peak_memory_cpu(build_attention_workload, {"variant": v, "n": n}, calls=1)
                row["peak_mb"] = memory.get("peak_rss_growth_mb")
        print(f"  cost at {n:5d} positions: " + ", ".join(f"{v} {results[v]['by_length'][n]['time_ms']:.1f} ms" for v in names), flush=True)
    for result in results.values():
        for key in ("time_ms", "peak_mb"):
            points = [(n, r[key]) for n, r in sorted(result["by_length"].items()) if r.get(key)]
            if len(points) >= 2 and points[-1][1] > 1e-3 and points[-2][1] > 1e-3:
                (n1, c1), (n2, c2) = points[-2], points[-1]
                result["exponent"][key] = math.log(c2 / c1) / math.log(n2 / n1)
    return results


def cost_markdown(results: dict, lengths: list[int]) -> str:
    header = ["pattern"] + [f"{n}" for n in lengths] + ["exponent"]
    time_rows, memory_rows = [], []
    for v, result in results.items():
        by_n, exponent = result["by_length"], result["exponent"]
        time_rows.append([v] + [_cell(by_n.get(n, {}).get("time_ms")) for n in lengths] + [_cell(exponent.get("time_ms"), 2)])
        memory_rows.append([v] + [_cell(by_n.get(n, {}).get("peak_mb")) for n in lengths] + [_cell(exponent.get("peak_mb"), 2)])
    return "\n\n".join([
        "### Time of one attention layer's forward (ms, median), against sequence length",
        markdown_table(header, time_rows),
        "### Peak memory growth (MB, RSS in a fresh process), against sequence length",
        markdown_table(header, memory_rows),
        "Exponent: slope of log(cost) vs log(pos) over the two longest measured lengths (2 = quadratic). "
        "Blank: not measured (the explicit path is skipped past 4096 positions: its matrices pass 1 GiB). "
        "Memory below ~1 MB is within the noise of RSS accounting. On CPU, PyTorch's fused kernel is itself tiled "
        "(flash-style), so full attention's *memory* stays moderate; its *time* is quadratic. The explicit path is "
        "what the equations cost when the [pos, pos] pattern is formed (a hook on attn.pattern). Linformer is "
        "bidirectional (an encoder layer), the others causal.",
    ])


def plot_cost(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for v, result in results.items():
        for ax, key in zip(axes, ("time_ms", "peak_mb")):
            points = [(n, r[key]) for n, r in sorted(result["by_length"].items()) if r.get(key)]
            if points:
                ax.plot(*zip(*points), marker="o", label=v)
    for ax, title in zip(axes, ("time of one forward (ms)", "peak memory growth (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"attention patterns, one layer, batch 1, d_model {D_MODEL}, {N_HEADS} heads (CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- 2. quality on long-range recall ----------------------------------------------------------------

N_PAYLOAD, N_FILLER = 8, 8
QUERY = N_PAYLOAD + N_FILLER  # the token that asks for the payload
QUALITY_VARIANTS = {
    "full": {},
    "sliding w=16": dict(attention="sliding", window=16),
    "sparse strided": dict(attention="sparse"),
    "sparse fixed": dict(attention="sparse", sparse_pattern="fixed", sparse_summary=2),
    "linear": dict(attention="linear"),
    "linformer k=16": dict(arch="encoder", attention="linformer", linformer_k=16),
}


class Recall:
    """Name the payload letter at distance pos - 1. Decoder: ``[a, filler..., ?]``, the answer ``a`` is
    predicted at the last position. Encoder: ``[?, filler..., a]``, classified from position 0."""

    name = "recall"
    n_classes = N_PAYLOAD

    def __init__(self, n: int, arch: str):
        self.n, self.archs = n, (arch,)

    def batch(self, batch_size: int, arch: str = "decoder", generator=None) -> Batch:
        payload = torch.randint(0, N_PAYLOAD, (batch_size, 1), generator=generator)  # [batch, 1]
        filler = N_PAYLOAD + torch.randint(0, N_FILLER, (batch_size, self.n - 2), generator=generator)
        query = torch.full((batch_size, 1), QUERY)
        if arch == "encoder":
            return Batch(torch.cat([query, filler, payload], dim=1), payload[:, 0], None)
        inputs = torch.cat([payload, filler, query], dim=1)  # [batch, n]
        targets = torch.zeros_like(inputs)
        targets[:, -1] = payload[:, 0]
        loss_mask = torch.zeros_like(inputs, dtype=torch.bool)
        loss_mask[:, -1] = True
        return Batch(inputs, targets, loss_mask)


def measure_quality(n: int, steps: int) -> dict:
    results = {}
    for name, fields in QUALITY_VARIANTS.items():
        fields = dict(fields)
        arch = fields.pop("arch", "decoder")
        torch.manual_seed(0)
        cfg = ModelConfig(arch=arch, d_model=32, n_heads=4, n_layers=2, d_vocab=QUERY + 1, n_ctx=n, positional="rope",
                          n_classes=N_PAYLOAD if arch == "encoder" else 0, **fields)
        config = TrainConfig(steps=steps, batch_size=16, lr=3e-3, warmup_steps=min(20, steps // 5), eval_every=0,
                             eval_batches=8, eval_batch_size=64, quiet=True, device="cpu")
        t0 = time.perf_counter()
        summary = Trainer(Transformer(cfg), Recall(n, arch), config).train()
        results[name] = {"arch": arch, "accuracy": summary["token_accuracy"], "loss": summary["loss"],
                         "seconds": time.perf_counter() - t0, "config": fields}
        print(f"  recall over {n} positions, {name}: accuracy {summary['token_accuracy']:.3f}", flush=True)
    return results


def quality_markdown(results: dict, n: int, steps: int) -> str:
    rows = [[name, r["arch"], r["accuracy"], r["loss"], r["seconds"]] for name, r in results.items()]
    return "\n\n".join([
        f"### Long-range recall: name the token {n - 1} positions away ({steps} steps, batch 16, chance 0.125)",
        markdown_table(["pattern", "arch", "accuracy", "loss", "seconds"], rows),
        "2 layers, d_model 32, RoPE, the core trainer (AdamW, lr 3e-3). Sliding w=16 reaches 2 x 15 = 30 positions "
        "back; sparse strided needs two hops (local, then the strided column); linear and Linformer are global "
        "but approximate. A small budget on purpose: what a pattern learns quickly, not what it can learn.",
    ])


# --- 3. positional extrapolation --------------------------------------------------------------------

SCHEMES = ("learned", "sinusoidal", "none", "rope", "alibi", "t5")


def measure_extrapolation(steps: int, eval_lengths: list[int], train_len: int = 64, tail: int = 64) -> dict | None:
    from glassformer.train.data import TextTask

    path = SHAKESPEARE_DIR / "tiny.txt"
    if not path.is_file():
        print(f"  extrapolation skipped: {path} not found")
        return None
    task = TextTask(path, block_size=train_len)
    val = task.with_split("val")
    g = torch.Generator().manual_seed(1234)
    results = {}
    for scheme in SCHEMES:
        torch.manual_seed(0)
        cfg = ModelConfig(d_model=64, n_heads=4, n_layers=2, d_vocab=task.d_vocab, n_ctx=train_len, positional=scheme)
        model = Transformer(cfg)
        config = TrainConfig(steps=steps, batch_size=16, lr=3e-3, warmup_steps=min(50, steps // 5), eval_every=0,
                             eval_batches=2, quiet=True, device="cpu")
        Trainer(model, task, config).train()
        model.eval()
        by_length = {}
        for L in eval_lengths:
            starts = torch.randint(0, len(val) - L - 1, (8,), generator=g)
            window = val.windows(starts, L + 1)  # [8, L + 1]
            if scheme == "learned" and L > train_len:
                by_length[L] = None  # no position vectors beyond n_ctx
                continue
            with torch.no_grad():
                logits = model(window[:, :-1])  # [8, L, d_vocab]
            losses = F.cross_entropy(logits.transpose(1, 2), window[:, 1:], reduction="none")  # [8, L]
            by_length[L] = {"tail_loss": losses[:, -tail:].mean().item(), "mean_loss": losses.mean().item()}
        results[scheme] = by_length
        print(f"  extrapolation, {scheme}: " + ", ".join(
            f"{L}: {r['tail_loss']:.3f}" if r else f"{L}: n/a" for L, r in by_length.items()), flush=True)
    return results


def extrapolation_markdown(results: dict, eval_lengths: list[int], steps: int) -> str:
    rows = [[s] + [_cell(r["tail_loss"] if r else None, 3) for r in (results[s][L] for L in eval_lengths)] for s in results]
    return "\n\n".join([
        f"### Extrapolation: loss on the last 64 positions of held-out windows, trained on 64 ({steps} steps)",
        markdown_table(["positional"] + [f"{L} chars" for L in eval_lengths], rows),
        "Character-level Shakespeare (tiny.txt), 2 layers, d_model 64. At 64 the loss is in-distribution; "
        "at 512 the scored positions are 448..511, 7x past anything seen in training. n/a: learned positions "
        "have no vector past n_ctx.",
    ])


def plot_extrapolation(results: dict, eval_lengths: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for scheme, by_length in results.items():
        points = [(L, r["tail_loss"]) for L, r in by_length.items() if r]
        ax.plot(*zip(*points), marker="o", label=scheme)
    ax.axvline(64, color="grey", linestyle=":", label="training length")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("evaluation window (characters)")
    ax.set_ylabel("loss on the last 64 positions")
    ax.set_title("which positional schemes extrapolate")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- driver -----------------------------------------------------------------------------------------


def _cell(value, digits: int = 3):
    """A table cell: ``value`` to ``digits`` significant digits, or blank when not measured."""
    return "" if value is None else float(f"{value:.{digits}g}")


def write(results_dir: Path, name: str, data: dict, markdown: str) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"attention_{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (results_dir / f"attention_{name}.md").write_text(markdown.rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer lengths, repeats and steps (about 3 minutes)")
    mode.add_argument("--smoke", action="store_true", help="a few seconds: checks the script runs")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where to write (default: bench/results)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: stable numbers on a shared machine; memory children use the same)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        lengths, repeats, memory_lengths, recall_n, recall_steps, lm_steps, eval_lengths = [128, 256], 1, [], 16, 2, 2, [64, 128]
    elif args.quick:
        lengths, repeats, memory_lengths = [128, 512, 2048, 8192], 2, [512, 8192]
        recall_n, recall_steps, lm_steps, eval_lengths = 128, 60, 120, [64, 128, 256]
    else:
        lengths, repeats = [128, 256, 512, 1024, 2048, 4096, 8192], 3
        memory_lengths = [512, 2048, 4096, 8192]
        recall_n, recall_steps, lm_steps, eval_lengths = 128, 300, 300, [64, 128, 256, 512]
    started = time.perf_counter()
    info = machine_info()
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"

    print("1. cost against sequence length", flush=True)
    cost = measure_cost(lengths, repeats, memory_lengths)
    cost_md = cost_markdown(cost, lengths)
    write(args.results_dir, "cost", {"machine": info, "mode": mode_name, "d_model": D_MODEL, "n_heads": N_HEADS,
                                     "variants": COST_VARIANTS, "results": cost}, cost_md)
    plot_cost(cost, args.results_dir / "attention_cost.png")

    print("2. quality on long-range recall", flush=True)
    quality = measure_quality(recall_n, recall_steps)
    quality_md = quality_markdown(quality, recall_n, recall_steps)
    write(args.results_dir, "quality", {"machine": info, "mode": mode_name, "n": recall_n, "steps": recall_steps,
                                        "results": quality}, quality_md)

    print("3. positional extrapolation", flush=True)
    extrapolation = measure_extrapolation(lm_steps, eval_lengths)
    extrapolation_md = "(skipped: shared/data/shakespeare/tiny.txt not found)"
    if extrapolation is not None:
        extrapolation_md = extrapolation_markdown(extrapolation, eval_lengths, lm_steps)
        write(args.results_dir, "extrapolation", {"machine": info, "mode": mode_name, "steps": lm_steps,
                                                  "eval_lengths": eval_lengths, "results": extrapolation}, extrapolation_md)
        plot_extrapolation(extrapolation, eval_lengths, args.results_dir / "attention_extrapolation.png")

    seconds = time.perf_counter() - started
    summary = "\n\n".join([
        f"## Attention patterns and positional schemes ({mode_name} run, {seconds:.0f} s, "
        f"{info.get('cpu', 'CPU')}, {torch.get_num_threads()} threads)",
        cost_md, "![cost](attention_cost.png)", quality_md, extrapolation_md, "![extrapolation](attention_extrapolation.png)",
    ])
    (args.results_dir / "attention_summary.md").write_text(summary + "\n")
    print(f"done in {seconds:.0f} s; results in {args.results_dir}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
