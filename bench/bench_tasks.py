"""The README's table of expected results: every generated task trained with the core trainer, as the
learning tests do (tests/train/test_learning.py, whose cases this reuses), timed on this machine.

    python bench/bench_tasks.py            # writes bench/results/tasks.{json,md}

Each row: the task and architecture, the model size, the steps until an evaluation reached 100% sequence
accuracy (or the budget ran out), sequence accuracy on 1024 fresh examples, and wall-clock seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import torch

from glassformer.train import TrainConfig, Trainer, get_task, model_for_task

REPO = Path(__file__).resolve().parents[1]


def learning_cases():
    spec = importlib.util.spec_from_file_location("test_learning", REPO / "tests" / "train" / "test_learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--smoke", action="store_true", help="one tiny case, for the smoke test")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    cases = learning_cases()[:1] if args.smoke else learning_cases()
    for name, options, arch, sizes, overrides, steps in cases:
        torch.manual_seed(0)
        task = get_task(name, **options)
        model = model_for_task(task, arch, **sizes)
        config = dict(steps=20 if args.smoke else steps, batch_size=64, lr=3e-3, warmup_steps=20, eval_every=50,
                      eval_batches=8, stop_at_accuracy=1.0, quiet=True)
        start = time.perf_counter()
        trainer = Trainer(model, task, TrainConfig(**{**config, **overrides}))
        summary = trainer.train()
        seconds = time.perf_counter() - start
        fresh = trainer.evaluate(n_batches=16, seed=12345)
        row = dict(task=name, options=options, arch=arch, params=model.num_params(), steps=summary["steps"],
                   sequence_accuracy=fresh["sequence_accuracy"], token_accuracy=fresh["token_accuracy"],
                   seconds=round(seconds, 1))
        rows.append(row)
        print(json.dumps(row))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "tasks.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        f"# Every task, learned on {os.cpu_count()} CPU cores ({args.threads} torch threads, torch {torch.__version__})",
        "",
        "| task | options | arch | parameters | steps | sequence accuracy (1024 fresh) | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "defaults"
        lines.append(f"| {r['task']} | {opts} | {r['arch']} | {r['params']:,} | {r['steps']} | "
                     f"{100 * r['sequence_accuracy']:.1f}% | {r['seconds']} |")
    (args.results_dir / "tasks.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
