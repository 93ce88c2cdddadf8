"""Decompiler benchmark: match, IIA, program size and decompile time, on compiled and trained models.

* ``compiled``: every library program compiled at N = 16 and decompiled; the decompiled program is
  compared with the original (the round trip, :mod:`glassformer.rasp.decompile.roundtrip`) on every input
  of up to 6 tokens (20,000 random ones of them where there are more) and on 2,000 random inputs at N = 16.
* ``trained``: every generated task (decoder) and every library program's ``rasp.task`` (decoder,
  max_len 6), each learned by a 2-layer model with the default recipe (d_model 64, 4 heads, batch 64,
  lr 3e-3, up to 2,000 steps, stopping at 100% on an evaluation); then decompiled.  Models are cached
  in ``--cache`` (retrained only when missing).

    python bench/bench_decompile.py [--part compiled|trained|all] [--quick] [--cache DIR] [--only NAME ...]

Writes ``decompile.{json,md,png}`` to bench/results (each part updates its own section).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glassformer import rasp  # noqa: E402
from glassformer.rasp import library  # noqa: E402
from glassformer.rasp.decompile import decompile  # noqa: E402
from glassformer.rasp.decompile.roundtrip import round_trip  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GENERATED = {  # task: options (the README's learning-test settings)
    "copy": {"length": 8}, "reverse": {"length": 8}, "sort": {"length": 8}, "histogram": {"length": 8},
    "induction": {}, "majority": {}, "dyck": {"length": 12}, "contains-ab": {}, "addition": {},
    "modular-addition": {"p": 31, "train_fraction": 0.9},
}

STEPS = {"task:induction": 4000}  # varied repeat lengths: 1,900-3,000 steps measured (tests/train/test_learning.py)


def program_size(program) -> dict:
    """Operations in the program and entries in its lookup tables."""
    from glassformer.rasp import language as L
    from glassformer.rasp.decompile.program import PairSet, Table

    ops = entries = 0
    for expr in L.walk(program):
        if isinstance(expr, (L.Tokens, L.Indices)):
            continue
        ops += 1
        for fn in (getattr(expr, "f", None), getattr(getattr(expr, "predicate", None), "fn", None)):
            if isinstance(fn, Table):
                entries += len(fn.mapping)
            elif isinstance(fn, PairSet):
                entries += len(fn.pairs)
    return {"ops": ops, "table_entries": entries}


def step_rows(result) -> list[dict]:
    return [{k: s[k] for k in ("name", "kind", "components", "mapped_component", "iia", "fit")}
            for s in result.report()["steps"]]


def bench_compiled(args) -> list[dict]:
    rows = []
    for name, entry in library.PROGRAMS.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        try:
            rt = round_trip(entry.build(), entry.vocab, max_len=args.max_len, n_random=args.n_random,
                            max_exhaustive=args.max_exhaustive, n_inputs=args.n_inputs, n_match=args.n_match,
                            n_pairs=args.n_pairs)
        except Exception as e:  # a program the compiler or decompiler cannot handle is a result too
            rows.append({"program": name, "error": f"{type(e).__name__}: {e}"})
            print(f"{name:20s} error {type(e).__name__}: {e}", flush=True)
            continue
        r = rt["decompiled"]
        iias = [s.iia for s in r.steps if s.iia is not None]
        row = {"program": name, "short_agree": rt["short"]["agree"], "short_inputs": rt["short"]["inputs"],
               "short_exhaustive": rt["short"]["exhaustive"], "random_agree": rt["random"]["agree"],
               "random_inputs": rt["random"]["inputs"], "match_sequence": r.match_sequence,
               "match_position": r.match_position, "iia_mean": sum(iias) / len(iias) if iias else None,
               "iia_min": min(iias) if iias else None, "steps": step_rows(r), **program_size(r.program),
               "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        print(f"{name:20s} short {row['short_agree']:.4f} random {row['random_agree']:.4f} match "
              f"{r.match_sequence:.4f} iia {row['iia_mean'] if iias else float('nan'):.3f} {row['seconds']}s",
              flush=True)
    return rows


def trained_cases(args) -> list[tuple[str, str, dict]]:
    cases = [(f"task:{t}", t, opts) for t, opts in GENERATED.items()]
    cases += [(f"rasp:{p}", p, {}) for p in library.PROGRAMS]
    return [c for c in cases if not args.only or c[0].split(":")[1] in args.only or c[0] in args.only]


def train_or_load(key: str, name: str, options: dict, cache: Path, steps: int):
    import glassformer
    from glassformer.train import Trainer, TrainConfig, get_task, model_for_task

    if key.startswith("task:"):
        task = get_task(name, **options)
        arch_sizes = dict(d_model=128, n_layers=1, n_heads=4) if name == "modular-addition" else \
            dict(d_model=64, n_layers=2, n_heads=4)
    else:
        task = rasp.task(name, max_len=6)
        arch_sizes = dict(d_model=64, n_layers=2, n_heads=4)
    folder = cache / key.replace(":", "_")
    version = getattr(task, "format_version", 1)
    if (folder / "checkpoint" / "task.json").exists() and \
            json.loads((folder / "checkpoint" / "task.json").read_text()).get("format", 1) != version:
        folder = cache / f"{key.replace(':', '_')}_f{version}"  # the task changed its format: a model of its own
    steps = STEPS.get(key, steps)
    summary_file = folder / "summary.json"
    if not summary_file.exists():
        torch.manual_seed(0)
        model = model_for_task(task, "decoder", **arch_sizes)
        config = TrainConfig(steps=steps, batch_size=64, lr=3e-3, warmup_steps=100, eval_every=100, eval_batches=4,
                             stop_at_accuracy=1.0, quiet=True, out_dir=str(folder), seed=0)
        Trainer(model, task, config).train()
    summary = json.loads(summary_file.read_text())
    model, _ = glassformer.load(folder)
    return model, task, summary


def bench_trained(args, results: dict | None = None) -> list[dict]:
    """Train (or load) and decompile each case; with ``results``, the results so far are written after
    every model (a long sweep can be read, or stopped, while it runs)."""
    rows = []
    cache = Path(args.cache)
    for key, name, options in trained_cases(args):
        try:
            t0 = time.perf_counter()
            model, task, summary = train_or_load(key, name, options, cache, args.steps)
            train_s = time.perf_counter() - t0
            start = time.perf_counter()
            r = decompile(model, task, n_inputs=args.n_inputs, n_match=args.n_match, n_pairs=args.n_pairs)
        except Exception as e:
            rows.append({"model": key, "error": f"{type(e).__name__}: {e}"})
            print(f"{key:28s} error {type(e).__name__}: {e}", flush=True)
            continue
        iias = [s.iia for s in r.steps if s.iia is not None]
        row = {"model": key, "learned": summary.get("sequence_accuracy"), "train_steps": summary.get("steps"),
               "match_sequence": r.match_sequence, "match_position": r.match_position,
               "iia_mean": sum(iias) / len(iias) if iias else None, "iia_min": min(iias) if iias else None,
               "kept": [c for c in r.report()["kept_components"]], "steps": step_rows(r), **program_size(r.program),
               "decompile_seconds": round(time.perf_counter() - start, 1), "train_seconds": round(train_s, 1)}
        rows.append(row)
        print(f"{key:28s} learned {row['learned']:.3f} match {r.match_position:.4f}/{r.match_sequence:.4f} "
              f"iia {row['iia_mean'] if iias else float('nan'):.3f} ops {row['ops']} "
              f"{row['decompile_seconds']}s", flush=True)
        if results is not None:
            write({**results, "trained": merged(rows, "trained", args)}, Path(args.results_dir))
    return merged(rows, "trained", args)


def merged(rows: list[dict], part: str, args) -> list[dict]:
    """With ``--only``, the new rows in place of the same models' old ones in the results file (the
    others kept, in their order); without it, the new rows alone."""
    path = Path(args.results_dir) / "decompile.json"
    if not args.only or not path.exists():
        return rows
    field = "model" if part == "trained" else "program"
    new = {r[field]: r for r in rows}
    old = json.loads(path.read_text()).get(part, [])
    out = [new.pop(r[field], r) for r in old]  # an old row keeps its "stale" mark until it is re-run
    return out + list(new.values())


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "decompile.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(results)
    path.write_text(json.dumps(old, indent=1, default=str))
    lines = ["# Decompiler benchmark", "", f"`python bench/bench_decompile.py`; {old.get('machine', '')}", ""]
    if "compiled" in old:
        lines += ["## Round trip: decompile(compile(p)) against p", "",
                  "| program | inputs <= 6 (exhaustive?) | agree | random N=16 | agree | match (model) | mean IIA | ops | "
                  "table entries | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in old["compiled"]:
            if "error" in r:
                lines.append(f"| {r['program']} | error: {r['error'][:80]} |||||||||")
                continue
            lines.append(f"| {r['program']} | {r['short_inputs']} ({'yes' if r['short_exhaustive'] else 'sampled'}) | "
                         f"{r['short_agree']:.4f} | {r['random_inputs']} | {r['random_agree']:.4f} | "
                         f"{r['match_sequence']:.4f} | {_f(r['iia_mean'])} | {r['ops']} | {r['table_entries']} | "
                         f"{r['seconds']} |")
        ok = [r for r in old["compiled"] if "error" not in r and r["short_agree"] == 1 and r["random_agree"] == 1]
        lines += ["", f"Exact round trip on {len(ok)} of {len(old['compiled'])} library programs.", ""]
    if "trained" in old:
        rows = [r for r in old["trained"] if "error" not in r]
        learned = [r for r in rows if (r["learned"] or 0) >= 0.99]
        good = [r for r in learned if r["match_position"] >= 0.99]
        lines += ["## Trained models (2 layers, default recipe)", ""]
        if old.get("trained_note"):
            lines += [old["trained_note"], ""]
        lines += ["| model | learned (seq. acc.) | steps | match / position | match / input | mean IIA | min IIA | "
                  "kept | ops | table entries | decompile s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in old["trained"]:
            if "error" in r:
                lines.append(f"| {r['model']} | error: {r['error'][:80]} ||||||||||")
                continue
            mark = " †" if r.get("stale") else ""
            lines.append(f"| {r['model']}{mark} | {r['learned']:.3f} | {r['train_steps']} | {r['match_position']:.4f} | "
                         f"{r['match_sequence']:.4f} | {_f(r['iia_mean'])} | {_f(r['iia_min'])} | {len(r['kept'])} | "
                         f"{r['ops']} | {r['table_entries']} | {r['decompile_seconds']} |")
        lines += ["", f"Learned (>= 99% sequence accuracy): {len(learned)} of {len(old['trained'])}; of those, match "
                      f">= 0.99 per position: {len(good)} ({len(good) / max(len(learned), 1):.0%}).", ""]
        if any(r.get("stale") for r in old["trained"]):
            lines += ["† not re-run with the current decompiler (a row of an earlier sweep, kept for comparison).", ""]
    (out / "decompile.md").write_text("\n".join(lines) + "\n")
    figure(old, out / "decompile.png")


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, [r for r in results.get(k, []) if "error" not in r]) for k in ("compiled", "trained")]
    panels = [(k, rows) for k, rows in panels if rows]
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 0.42 * max(len(r) for _, r in panels)), 4 * len(panels)),
                             squeeze=False)
    for ax, (kind, rows) in zip(axes[:, 0], panels):
        names = [r.get("program") or r.get("model") for r in rows]
        x = range(len(rows))
        first = [r["random_agree"] if kind == "compiled" else r["match_position"] for r in rows]
        second = [r["iia_mean"] if r["iia_mean"] is not None else 0 for r in rows]
        ax.bar([i - 0.2 for i in x], first, 0.4, label="agreement with p (random N=16)" if kind == "compiled"
               else "match with the model (per position)")
        ax.bar([i + 0.2 for i in x], second, 0.4, label="mean IIA of the steps")
        ax.axhline(0.99, color="k", lw=0.6, ls="--")
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title("compiled models: the round trip" if kind == "compiled" else "trained models (2 layers)")
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("compiled", "trained", "all"), default="all")
    ap.add_argument("--quick", action="store_true", help="fewer inputs (a smoke run)")
    ap.add_argument("--only", nargs="*", help="only these programs / tasks")
    ap.add_argument("--cache", default="runs/bench_decompile", help="folder of trained models (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=2000, help="training step budget (default: 2000)")
    ap.add_argument("--max-len", type=int, default=16, help="N of the compiled models (default: 16)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-inputs", type=int, help="inputs read per model (default: 1000, --quick 250)")
    ap.add_argument("--results-dir", default=str(RESULTS_DIR))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scale = 4 if args.quick else 1
    n = args.n_inputs or 1000 // scale
    args.n_inputs, args.n_match, args.n_pairs = n, n, max(50, n // 5)
    args.n_random, args.max_exhaustive = 2000 // scale, 20000 // scale
    results = {"machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                          f"{args.threads} thread(s)"}
    if args.part in ("compiled", "all"):
        results["compiled"] = merged(bench_compiled(args), "compiled", args)
        write(results, Path(args.results_dir))
    if args.part in ("trained", "all"):
        results["trained"] = bench_trained(args, results)
        write(results, Path(args.results_dir))


if __name__ == "__main__":
    main()
