"""``glassformer decompile RUN --out prog.py --report report.json``: a checkpoint back as a RASP program.

RUN is a training run or checkpoint folder (its task is rebuilt from the checkpoint, ``train --rasp``
runs included) or a compiled program's folder (``glassformer rasp compile --out``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from glassformer.errors import CheckpointError, InputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "decompile", help="read a trained or compiled model back as a RASP program, checked by intervention",
        description="Decompile a model into a RASP program: prune its components causally, read each kept head as "
                    "Select + Aggregate and each MLP as a table, and measure how well the program matches the model "
                    "(match on fresh inputs, interchange-intervention accuracy per step).")
    p.add_argument("run", metavar="RUN", help="a training run / checkpoint folder, or a compiled program's folder")
    p.add_argument("--out", help="write the program here (a Python file `glassformer rasp run FILE:program` reads)")
    p.add_argument("--report", help="write the JSON report here (program, match_sequence, match_position, n_inputs, steps)")
    p.add_argument("--n-inputs", type=int, default=1000, help="inputs read to fit the program (default: 1000)")
    p.add_argument("--n-match", type=int, default=1000, help="other fresh inputs the match is measured on (default: 1000)")
    p.add_argument("--n-pairs", type=int, default=200, help="input pairs for the interventions (default: 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default: 0)")
    p.add_argument("--device", default="cpu", help="device to run the model on (default: cpu)")
    p.set_defaults(func=cmd_decompile)


def load_run(path: str, device: str = "cpu"):
    """``(model, task)`` of a checkpoint folder: a CompiledModel and None, or a Transformer and its task."""
    from glassformer.train.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path, device=device)
    if "rasp" in checkpoint.extra:
        from glassformer.rasp.compiler.compiled import CompiledModel

        return CompiledModel.load(path, device=device), None
    return checkpoint.model, task_of(checkpoint)


def task_of(checkpoint):
    """The task a checkpoint was trained on, ``train --rasp`` tasks included."""
    spec = checkpoint.task
    if not isinstance(spec, dict) or "name" not in spec:
        raise InputError(f"{checkpoint.path} records no task, so there is nothing to read the model on")
    if spec["name"] == "rasp":
        from glassformer.rasp.task import RaspTask

        return RaspTask(**spec.get("options", {}))
    from glassformer.train.trainer import task_from_spec

    task = task_from_spec(spec, tokenizer=checkpoint.tokenizer)
    if getattr(task, "tokenizer", None) is None:
        raise CheckpointError(f"{checkpoint.path}: its task has no tokenizer to read the model's outputs with")
    return task


def cmd_decompile(args) -> int:
    import torch

    from glassformer.rasp.decompile import decompile

    model, task = load_run(args.run, args.device)
    for name in ("n_inputs", "n_match", "n_pairs"):
        if getattr(args, name) < 2:
            raise InputError(f"--{name.replace('_', '-')} must be at least 2, got {getattr(args, name)}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread is faster than a contended pool
    try:
        result = decompile(model, task, n_inputs=args.n_inputs, n_match=args.n_match, n_pairs=args.n_pairs,
                           seed=args.seed, progress=sys.stderr.isatty())
    finally:
        torch.set_num_threads(threads)
    print(result.summary())
    source = result.source
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        source = source.replace("program.py:program", f"{out}:program")
        out.write_text(source)
        print(f"program: {out}   (try: glassformer rasp run {out}:program --input ...)")
    else:
        print()
        print(source)
    if args.report:
        report = result.report()
        report["program"] = source
        path = Path(args.report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1))
        print(f"report:  {path}")
    return 0
