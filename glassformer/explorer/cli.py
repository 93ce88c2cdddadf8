"""``glassformer explore RUN|CONFIG [--port P] [--no-browser] [--compare B]``: the explorer in the browser."""

from __future__ import annotations

import argparse

from glassformer.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``explore`` to the ``glassformer`` command line."""
    p = subparsers.add_parser(
        "explore",
        help="explore a model live in the browser: attention, logit lens, ablations, equations, sampling",
        description="Start a local web app (bound to 127.0.0.1) showing the model live: type an input and watch "
        "predictions, every head's attention, the logit lens and direct logit attribution update; ablate or patch a "
        "head or an MLP; expand any step of the forward pass into its equation with the real numbers; sample token by "
        "token with the KV cache; for a compiled RASP model, the program and each s-op's residual dimensions. "
        "Ctrl-C stops it. Needs the 'explore' extra (pip install 'glassformer[explore]').",
    )
    p.add_argument("model", metavar="RUN|CONFIG", help="checkpoint or run folder (trained or compiled), a Hugging Face "
                   "folder (config.json + *.safetensors), or a model config file (.json/.toml: random weights)")
    p.add_argument("--compare", metavar="B", help="a second model: the page shows the same input through both")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser; just print the address")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights when given a CONFIG (default: 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per request (default: 1; small models answer "
                   "fastest on one)")
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace) -> int:
    try:
        from glassformer.explorer.server import serve
    except ModuleNotFoundError as e:
        raise InputError(f"the explorer needs {e.name}: pip install 'glassformer[explore]' (starlette, uvicorn)") from None
    import torch

    from glassformer.explorer.api import Explorer

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    explorer = Explorer.open(args.model, args.compare, seed=args.seed)
    serve(explorer, args.host, args.port, open_browser=not args.no_browser)
    return 0
