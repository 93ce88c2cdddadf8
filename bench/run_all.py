"""Run every benchmark: each ``bench/bench_*.py`` in its own process, one after the other.

Each benchmark writes its own results under ``bench/results/`` (the core ones ``core_*.{json,md,png}``;
other engineers' ``bench_rasp.py``, ``bench_lens.py``, ``bench_attention.py`` their own). This script
only runs them and prints a summary: which ran, how long, and whether they succeeded. It writes
``bench/results/run_all.json`` with the same.

Flags are passed on by convention: ``--quick`` and ``--smoke`` go to every benchmark whose source
mentions that flag (others run in their default mode); anything after ``--`` goes to all of them.

    python bench/run_all.py                    # everything, full length
    python bench/run_all.py --quick            # the short versions
    python bench/run_all.py --only train,sample
    python bench/run_all.py --smoke -- --results-dir /tmp/bench   (what the smoke test does)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def discover(only: list[str] | None = None) -> list[Path]:
    """``bench/bench_*.py`` in name order; ``only`` keeps those named (``train`` or ``bench_train``)."""
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if only:
        wanted = {name.removeprefix("bench_").removesuffix(".py") for name in only}
        unknown = wanted - {s.stem.removeprefix("bench_") for s in scripts}
        if unknown:
            raise SystemExit(f"run_all: no benchmark named {', '.join(sorted(unknown))}; have {[s.stem for s in scripts]}")
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    return scripts


def command_for(script: Path, modes: list[str], extra: list[str]) -> list[str]:
    source = script.read_text()
    flags = [mode for mode in modes if mode in source]  # only benchmarks that understand the flag get it
    return [sys.executable, str(script), *flags, *extra]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to benchmarks that have it")
    parser.add_argument("--smoke", action="store_true", help="pass --smoke to benchmarks that have it")
    parser.add_argument("--only", default=None, help="comma-separated benchmark names (e.g. train,sample)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a benchmark is stopped (default 3600)")
    args = parser.parse_args(own)
    scripts = discover(args.only.split(",") if args.only else None)
    if args.list:
        print("\n".join(s.name for s in scripts))
        return 0
    modes = [flag for flag, on in (("--quick", args.quick), ("--smoke", args.smoke)) if on]
    summary = []
    for script in scripts:
        cmd = command_for(script, modes, extra)
        print(f"=== {script.name}: {' '.join(cmd[1:])}", flush=True)
        started = time.perf_counter()
        try:
            rc = subprocess.run(cmd, cwd=BENCH_DIR.parent, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        seconds = time.perf_counter() - started
        summary.append({"bench": script.stem, "command": cmd[1:], "returncode": rc, "seconds": round(seconds, 1)})
        print(f"=== {script.name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {seconds:.0f} s", flush=True)
    width = max(len(s["bench"]) for s in summary) if summary else 0
    print("\nsummary:")
    for s in summary:
        print(f"  {s['bench']:<{width}}  {'ok' if s['returncode'] == 0 else 'FAILED'}  {s['seconds']:>7.1f} s")
    if not args.smoke and "--results-dir" not in extra:
        results = BENCH_DIR / "results"
        results.mkdir(exist_ok=True)
        (results / "run_all.json").write_text(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": summary}, indent=2) + "\n")
    return 0 if all(s["returncode"] == 0 for s in summary) else 1


if __name__ == "__main__":
    raise SystemExit(main())
