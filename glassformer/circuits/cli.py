"""``glassformer circuits build | score``: the circuit benchmark from the command line.

    glassformer circuits build --out DIR [--quick]
    glassformer circuits score [--quick] [--suite DIR] --out DIR [--methods a,b] [--pairs N]

``score`` without ``--suite`` builds the default suite (or its ``--quick`` subset) into ``OUT/suite``
first. It writes ``OUT/scores.json`` (``{"models": N, "methods": {NAME: {"precision", "recall", "auroc",
"seconds"}}}``) with the per-model rows beside it (``rows.jsonl``, ``table.md``, ``below_chance.md``).
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("circuits", help="circuits with known answers: build the suite, score the lens methods",
                              description="Compiled RASP models whose circuits are known exactly, and the score of "
                              "every circuit-finding method against them (docs/circuits.md).")
    sub = p.add_subparsers(dest="circuits_command", metavar="COMMAND")
    b = sub.add_parser("build", help="compile the suite and save each model with its ground truth",
                       description="Compile library and random RASP programs (some with a distractor program beside "
                       "them, some compiled-then-trained), derive and check each ground truth, save them under --out.")
    b.add_argument("--out", required=True, help="the suite folder to write")
    b.add_argument("--quick", action="store_true", help="the 24-model subset (tests, CI)")
    b.add_argument("--trained", type=int, default=None,
                   help="compiled-then-trained candidates in the full suite, kept if IIA >= 0.99 (default: all 11)")
    b.set_defaults(func=run_build)
    s = sub.add_parser("score", help="score every circuit method on the suite",
                       description="Run every method on every model of the suite and write scores.json "
                       "(precision, recall, AUROC, seconds per method) and per-model rows.")
    s.add_argument("--suite", help="a suite folder from 'circuits build' (default: build one into OUT/suite)")
    s.add_argument("--out", required=True, help="where to write scores.json and the per-model rows")
    s.add_argument("--quick", action="store_true", help="without --suite: build and score the 24-model subset")
    s.add_argument("--methods", help="comma-separated method names (default: all)")
    s.add_argument("--pairs", type=int, default=16, help="clean/corrupt input pairs per model (default 16)")
    s.set_defaults(func=run_score)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def run_build(args: argparse.Namespace) -> int:
    from glassformer.circuits.suite import build_suite, default_entries, one_thread

    one_thread()
    index = build_suite(args.out, default_entries(args.quick, trained=args.trained))
    print(f"{len(index)} models with their ground truth in {args.out}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    from pathlib import Path

    from glassformer.circuits.errors import CircuitsError
    from glassformer.circuits.methods import METHODS
    from glassformer.circuits.scoring import score_suite
    from glassformer.circuits.suite import build_suite, default_entries, load_suite, one_thread

    one_thread()
    if args.pairs < 1:
        raise CircuitsError(f"--pairs must be at least 1, got {args.pairs}")
    methods = None
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise CircuitsError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(METHODS)}")
    suite = args.suite
    if suite is None:
        suite = str(Path(args.out) / "suite")
        build_suite(suite, default_entries(args.quick))
    summary = score_suite(load_suite(suite), args.out, methods=methods, n_pairs=args.pairs)
    print(json.dumps(summary, indent=1))
    return 0
