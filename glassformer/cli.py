"""The ``glassformer`` command line.

Each subsystem adds its own commands from its ``cli.py`` (a ``register(subparsers)`` function), so this file
only assembles them: training (demo, train, sample, eval, tasks), RASP (rasp ...), the lens (inspect,
experiment ...), the explainer (explain, diagram).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from glassformer.errors import GlassformerError

SUBSYSTEMS = ("glassformer.train.cli", "glassformer.rasp.cli", "glassformer.lens.cli", "glassformer.explain.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glassformer",
        description="A transformer you can read, train, compile programs into, and look inside.",
    )
    parser.add_argument("--version", action="version", version=f"glassformer {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBSYSTEMS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except GlassformerError as e:
        print(f"glassformer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # training says at which step it stopped and where it saved
        print(f"glassformer: {e}" if str(e) else "glassformer: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from glassformer import __version__

    return __version__


if __name__ == "__main__":
    raise SystemExit(main())
