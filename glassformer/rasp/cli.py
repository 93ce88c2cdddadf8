"""``glassformer rasp ...``: list, run, compile and compare RASP programs.

    glassformer rasp list
    glassformer rasp run reverse --input abc [--compiled --max-len 8]
    glassformer rasp compile reverse --vocab abcd --max-len 8 --out runs/reverse
    glassformer rasp compare reverse --max-len 6 --steps 1500 --out runs/reverse_compare
    glassformer decompile RUN --out prog.py --report report.json   (registered here, a top-level command)

PROGRAM is a library name, or ``FILE.py:NAME`` / ``FILE.py`` for a program of your own: NAME is a SOp
(or a function of no arguments returning one) defined in the file; without NAME the file's ``program``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from glassformer.errors import InputError
from glassformer.rasp import library
from glassformer.rasp.errors import RaspProgramError
from glassformer.rasp.language import SOp


def register(subparsers) -> None:
    """Add ``rasp`` with its subcommands to the ``glassformer`` parser's subparsers."""
    rasp = subparsers.add_parser(
        "rasp", help="RASP programs: list, run, compile to a Transformer, compare with a trained one",
        description="Write a transformer's algorithm as a RASP program, run it, compile it into weights.")
    sub = rasp.add_subparsers(dest="rasp_command", metavar="SUBCOMMAND")
    rasp.set_defaults(func=lambda args: _help(rasp))

    p = sub.add_parser("list", help="list the library programs", description="List the library programs.")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run a program on an input", description="Run a program with the interpreter "
                       "(and, with --compiled, with its compiled model) and print the output.")
    _program_arg(p)
    p.add_argument("--input", required=True, help="the input: characters, or space-separated ints for int vocabularies")
    p.add_argument("--compiled", action="store_true", help="also compile the program and run the model")
    p.add_argument("--vocab", help="vocabulary for --compiled (default: the library entry's)")
    p.add_argument("--max-len", type=int, help="maximum length for --compiled (default: the input's length)")
    p.add_argument("--code", action="store_true", help="print the program as code first")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compile", help="compile a program into a checkpoint", description="Compile a program into "
                       "a glassformer Transformer and save it as a checkpoint folder.")
    _program_arg(p)
    p.add_argument("--vocab", help="the input vocabulary: characters, or comma-separated tokens (default: the "
                                   "library entry's)")
    p.add_argument("--max-len", type=int, required=True, help="the longest input the model must handle")
    p.add_argument("--out", help="checkpoint folder to write (default: print the summary only)")
    p.add_argument("--dtype", choices=("auto", "float32", "float64"), default="auto",
                   help="model dtype (auto: float32 unless its rounding would break exactness)")
    p.add_argument("--labels", action="store_true", help="print the residual stream's dimension labels")
    p.add_argument("--sparse", action="store_true", help="store only the non-zero weights (read back by "
                                                         "CompiledModel.load; glassformer sample needs the dense default)")
    p.add_argument("--causal", action="store_true", help="compile into a decoder (causal attention); every selector "
                                                         "must look only back (k <= q)")
    p.add_argument("--reuse-residual", action="store_true", help="let SOps written later reuse the residual "
                   "dimensions of SOps no longer read (a narrower model; a dimension then has several labels)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("compare", help="train a model on the program's task and compare it with the compiled one",
                       description="Train an encoder on the task the program solves, compile the program, decompile "
                                   "both, and compare accuracy, size and the two programs step by step with each "
                                   "step's IIA (a table and a figure).")
    _program_arg(p)
    p.add_argument("--vocab", help="the input vocabulary (default: the library entry's)")
    p.add_argument("--max-len", type=int, default=6, help="longest input (default: 6)")
    p.add_argument("--steps", type=int, default=1500, help="training steps (default: 1500)")
    p.add_argument("--d-model", type=int, default=64, help="trained model's residual width (default: 64)")
    p.add_argument("--n-layers", type=int, help="trained model's layers (default: the compiled model's)")
    p.add_argument("--n-heads", type=int, help="trained model's heads per layer (default: max(2, compiled))")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size (default: 64)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default: 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed for data and initialisation (default: 0)")
    p.add_argument("--device", default="cpu", help="training device: cpu, cuda, mps or auto (default: cpu)")
    p.add_argument("--decompile-inputs", type=int, default=600,
                   help="inputs each model is read on when it is decompiled (default: 600)")
    p.add_argument("--out", help="folder for compare.json, compare.md and compare.png (default: print only)")
    p.set_defaults(func=cmd_compare)

    from glassformer.rasp.decompile.cli import register as register_decompile

    register_decompile(subparsers)  # the top-level `glassformer decompile RUN`


def _program_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("program", metavar="PROGRAM",
                   help="a library program (see `glassformer rasp list`) or FILE.py[:NAME] with your own SOp")


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


# -- resolving programs ---------------------------------------------------------------------------


def load_program(spec: str) -> tuple[SOp, library.Entry | None]:
    """A library program by name, or a SOp from ``FILE.py[:NAME]``; with its library entry if any."""
    if spec in library.PROGRAMS:
        entry = library.PROGRAMS[spec]
        return entry.build(), entry
    path, _, name = spec.partition(":") if spec.count(":") == 1 and not Path(spec).exists() else (spec, "", "")
    if not path.endswith(".py"):
        raise RaspProgramError(f"no library program {spec!r}; available: {', '.join(library.PROGRAMS)} "
                               "(or give FILE.py[:NAME])")
    file = Path(path)
    if not file.is_file():
        raise InputError(f"program file not found: {file}")
    module_spec = importlib.util.spec_from_file_location(f"rasp_user_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    name = name or "program"
    if not hasattr(module, name):
        sops = [k for k, v in vars(module).items() if isinstance(v, SOp) and not k.startswith("_")]
        raise RaspProgramError(f"{file} defines no {name!r}; SOps it defines: {', '.join(sops) or 'none'} "
                               "(choose one with FILE.py:NAME)")
    value = getattr(module, name)
    if callable(value) and not isinstance(value, SOp):
        value = value()
    if not isinstance(value, SOp):
        raise RaspProgramError(f"{file}:{name} is a {type(value).__name__}, not a RASP SOp")
    return value, None


def _parse_vocab(text: str | None, entry: library.Entry | None) -> list:
    if text is None:
        if entry is None:
            raise InputError("--vocab is needed for a program that is not from the library")
        return list(entry.vocab)
    if "," in text:
        items = [t.strip() for t in text.split(",")]
        return [int(t) if t.lstrip("-").isdigit() else t for t in items]
    return list(text)


def parse_input(text: str, entry: library.Entry | None, vocab: list | None) -> list:
    """A program input from the command line: a library entry's own format, space- or comma-separated ints for
    an int vocabulary, else one character per element."""
    if entry is not None:
        return entry.input_of(text)
    if vocab and all(isinstance(v, int) for v in vocab):
        items = text.replace(",", " ").split()
        bad = [t for t in items if not t.lstrip("-").isdigit()]
        if bad:
            raise InputError(f"the vocabulary is integers: {bad[0]!r} in the input is not one (write e.g. '3 1 2')")
        return [int(t) for t in items]
    return list(text)


def show_values(values: list) -> str:
    """A program's input or output as one line: a string for characters, else space-separated values."""
    if all(isinstance(v, str) and len(v) == 1 for v in values):
        return "".join(values)
    return " ".join("None" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in values)


# -- commands -------------------------------------------------------------------------------------


def cmd_list(args) -> int:
    width = max(len(n) for n in library.PROGRAMS)
    for name, entry in library.PROGRAMS.items():
        vocab = "".join(entry.vocab) if all(isinstance(v, str) for v in entry.vocab) else ",".join(map(str, entry.vocab))
        causal = "  (compiles with --causal)" if entry.causal else ""
        print(f"{name:{width}}  vocab {vocab:12}  {entry.summary}{causal}")
    return 0


def cmd_run(args) -> int:
    from glassformer.rasp import evaluate, to_code

    program, entry = load_program(args.program)
    vocab = _parse_vocab(args.vocab, entry) if (args.compiled or args.vocab) else None
    xs = parse_input(args.input, entry, vocab)
    if args.code:
        print(to_code(program))
        print()
    print(f"input:       {show_values(xs)}")
    print(f"interpreter: {show_values(evaluate(program, xs))}")
    if args.compiled:
        from glassformer.rasp import compile as compile_program

        compiled = compile_program(program, vocab=vocab, max_len=args.max_len or max(len(xs), 1))
        print(f"compiled:    {show_values(compiled.run(xs))}   ({compiled.summary()['layers']} layers, "
              f"{compiled.summary()['params']:,} parameters)")
    return 0


def cmd_compile(args) -> int:
    from glassformer.rasp import compile as compile_program

    program, entry = load_program(args.program)
    vocab = _parse_vocab(args.vocab, entry)
    compiled = compile_program(program, vocab=vocab, max_len=args.max_len,
                               dtype=None if args.dtype == "auto" else args.dtype, causal=args.causal,
                               reuse_residual=args.reuse_residual)
    print(compiled.describe())
    print(f"compiled in {compiled.compile_seconds:.3f} s")
    if args.labels:
        print("residual stream: " + ", ".join(compiled.residual_labels))
    if args.out:
        path = compiled.save(args.out, sparse=args.sparse)
        print(f"saved to {path} (load with glassformer.load or glassformer.rasp.CompiledModel.load)")
    return 0


def cmd_compare(args) -> int:
    import torch

    from glassformer.rasp import compile as compile_program
    from glassformer.rasp.compare import train_and_compare, write

    program, entry = load_program(args.program)
    vocab = _parse_vocab(args.vocab, entry)
    compiled = compile_program(program, vocab=vocab, max_len=args.max_len)
    threads = torch.get_num_threads()
    if args.device == "cpu":
        torch.set_num_threads(1)  # small models: one thread is faster than a contended pool
    try:
        comparison, _ = train_and_compare(
            compiled, steps=args.steps, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device, quiet=not sys.stderr.isatty(),
            n_decompile=args.decompile_inputs)
    finally:
        torch.set_num_threads(threads)
    print(comparison.table())
    print()
    print("decompiled trained model:\n" + comparison.programs["trained"]["source"])
    if args.out:
        files = write(comparison, args.out)
        print("wrote " + ", ".join(str(p) for p in files.values()))
    else:
        print(json.dumps({"trained": comparison.trained, "compiled": comparison.compiled}))
    return 0
