"""Circuit benchmark: build the suite of compiled models with known circuits, score every method on it.

    python bench/bench_circuits.py [--quick | --smoke] [--threads N] [--results-dir DIR] [--suite DIR]

Builds the default suite (``--quick``: the 24-model subset; ``--smoke``: 4 models), scores every method
(``glassformer circuits score``; the decompiler, many times slower than the rest, on every 5th model of the
full suite: ``--decompiler-every``) and writes, in the results folder:

    circuits_scores.json     the scores.json of ``circuits score`` plus build / score wall time
    circuits_table.md        a table per method and model kind; circuits_below_chance.md
    circuits_rows.jsonl      one row per (model, method)
    circuits.png             AUROC per method (box over models) and mean precision / recall
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glassformer.circuits.methods import METHODS  # noqa: E402
from glassformer.circuits.scoring import below_chance, score_suite, summarise, table  # noqa: E402
from glassformer.circuits.suite import build_suite, default_entries, load_suite  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.6))
    data = [[r["auroc"] for r in rows if r["method"] == m and r["auroc"] is not None] for m in methods]
    try:
        a.boxplot(data, orientation="horizontal", tick_labels=methods)  # matplotlib >= 3.10
    except TypeError:
        a.boxplot(data, vert=False, labels=methods)
    a.axvline(0.5, color="grey", ls="--", lw=1)
    a.set_xlabel("AUROC per model (0.5 = chance)")
    a.set_title("ranking true components / edges above the rest")
    a.invert_yaxis()
    y = np.arange(len(methods))

    def mean(m, k):
        xs = [r[k] for r in rows if r["method"] == m and r[k] is not None]
        return float(np.mean(xs)) if xs else 0.0

    b.barh(y - 0.2, [mean(m, "precision") for m in methods], 0.4, label="precision")
    b.barh(y + 0.2, [mean(m, "recall") for m in methods], 0.4, label="recall")
    b.set_yticks(y, methods)
    b.invert_yaxis()
    b.set_xlim(0, 1.05)
    b.set_title("the circuit each method claims")
    b.legend(loc="lower right")
    n = len({r["model"] for r in rows})
    fig.suptitle(f"Circuit methods on {n} compiled models with known circuits")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_scores(rows: list[dict], summary: dict, out: Path) -> None:
    """The files ``circuits score`` writes, for rows merged from several scoring runs."""
    (out / "scores.json").write_text(json.dumps(summary, indent=1))
    (out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "table.md").write_text(table(rows))
    (out / "below_chance.md").write_text(below_chance(rows))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results-dir", default=str(RESULTS_DIR))
    p.add_argument("--suite", help="score this suite folder instead of building one")
    p.add_argument("--decompiler-every", type=int, default=5,
                   help="score the decompiler on every k-th model of the full suite (default 5; --quick: all)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="circuits-"))
    try:
        start, cpu = time.perf_counter(), time.process_time()
        if args.suite:
            suite = Path(args.suite)
        else:
            suite = work / "suite"
            entries = default_entries(quick=args.quick or args.smoke)
            build_suite(suite, entries[:4] if args.smoke else entries)
        built, built_cpu = time.perf_counter() - start, time.process_time() - cpu
        models = load_suite(suite)
        start, cpu = time.perf_counter(), time.process_time()
        summary = score_suite(models, work / "scores", methods=[m for m in METHODS if m != "decompiler"])
        every = 1 if args.quick or args.smoke else args.decompiler_every
        subset = models[::every]  # the decompiler, many times slower than the rest, on every k-th model
        score_suite(subset, work / "scores_decompiler", methods=["decompiler"])
        rows = [json.loads(line) for name in ("scores", "scores_decompiler")
                for line in (work / name / "rows.jsonl").read_text().splitlines()]
        summary = summarise(rows, len(models))
        summary["methods"]["decompiler"]["models"] = len(subset)
        write_scores(rows, summary, work / "scores")
        scored, scored_cpu = time.perf_counter() - start, time.process_time() - cpu
        index = json.loads((suite / "index.json").read_text())
        summary["build_seconds"] = round(built if not args.suite else sum(r["seconds"] for r in index["models"]), 1)
        summary["score_seconds"] = round(scored, 1)
        summary["build_cpu_seconds"] = round(built_cpu, 1)  # this process's CPU time: what a quiet machine would take
        summary["score_cpu_seconds"] = round(scored_cpu, 1)
        summary["load_average_1m"] = round(__import__("os").getloadavg()[0], 1)
        summary["threads"] = args.threads
        summary["rejected_trained"] = index.get("rejected", [])
        summary["kinds"] = {k: sum(1 for r in index["models"] if r.get("kind") == k) for k in ("compiled", "trained")}
        summary["sources"] = {k: sum(1 for r in index["models"] if r.get("source") == k)
                              for k in ("library", "random", "tracr", "trained")}
        summary["decoders"] = sum(1 for r in index["models"] if r.get("causal"))
        summary["with_distractor"] = sum(1 for r in index["models"] if r.get("distractor_seed") is not None
                                         or r.get("distractor_program") is not None)
        summary["ground_truth"] = {k: sum(r[k] for r in index["models"]) for k in
                                   ("true_nodes", "true_edges", "constant_edges", "inert_edges")}
        summary["ground_truth_check"] = {k: sum(r["check"].get(k, 0) for r in index["models"])
                                         for k in index["models"][0]["check"]}
        (results / "circuits_scores.json").write_text(json.dumps(summary, indent=1))
        for name in ("table.md", "below_chance.md", "rows.jsonl"):
            shutil.copy(work / "scores" / name, results / f"circuits_{name}")
        rows = [json.loads(line) for line in (work / "scores" / "rows.jsonl").read_text().splitlines()]
        figure(rows, results / "circuits.png")
        print(json.dumps({k: v for k, v in summary.items() if k != "rejected_trained"}, indent=1))
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
