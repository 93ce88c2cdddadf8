"""Shared helpers for the benchmarks: timing, peak memory, the machine's matmul peak, FLOP counts, results.

Timing on a shared machine is noisy, so every comparison is measured the same way:

* ``interleaved(candidates)`` runs the candidates round-robin (A B A B ..., the order reversed every
  other round so neither side always runs "second"), after ``warmup`` untimed calls of each, and keeps
  every sample. The reported number is the **median** sample; the spread ((p75 - p25) / median) is
  reported next to it as the noise seen.
* Peak memory on CPU is the growth of the process's resident set size, peak (VmHWM, reset just before
  the workload) minus the size before it, measured in a fresh ``spawn`` subprocess per candidate (a warm allocator in a shared
  process would hide what the second candidate allocates). On CUDA it is
  ``torch.cuda.max_memory_allocated``.
* MFU (model FLOP utilisation) = achieved model FLOP/s / the machine's *measured* matmul peak, measured
  here with large square ``torch.mm`` calls in the same dtype (the best of the per-size medians).

A bench script then only says what it compares: its options (``bench_options``/``parse_options`` add
the shared ``--threads``, ``--results-dir`` and ``--repeats``), the candidates (zero-argument callables, one
per side), ``throughput(...)`` to time them and turn the medians into tokens/s and MFU, and its tables;
``save_results`` writes ``core_<name>.{json,md}``.

Training FLOPs per token (PaLM, Chowdhery et al. 2022, appendix B):

    6 * N  +  12 * n_layers * d_model * n_ctx

N counts the parameters that take part in matrix multiplies (attention and MLP weight matrices and the
unembedding W_U, tied or not); embedding look-ups, biases and norm gains are left out. The first term is
2 FLOPs per multiply-add times 3 (forward, and backward for inputs and for weights); the second is the
attention scores q k^T and the mix pattern v, counted over the full n_ctx x n_ctx square (no discount for
the causal mask, as PaLM and nanoGPT count it). A forward pass alone is a third of both terms.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_ROOT = BENCH_DIR.parent
SHAKESPEARE_DIR = REPO_ROOT / ".." / "shared" / "data" / "shakespeare"


# --- timing -----------------------------------------------------------------------------------------


@dataclass
class Timing:
    """The samples (seconds per call) of one candidate, and their summary."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median: the noise between repeats."""
        if len(self.samples) < 4:
            return (max(self.samples) - min(self.samples)) / self.median
        q1, _, q3 = statistics.quantiles(self.samples, n=4)
        return (q3 - q1) / self.median

    def summary(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "best_s": self.best,
            "spread": self.spread,
            "repeats": len(self.samples),
            "samples_s": [round(s, 6) for s in self.samples],
        }


def synchronize(device: torch.device | str = "cpu") -> None:
    """Wait for queued GPU work (a no-op on CPU) so a timer measures the work, not its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(
    candidates: dict[str, Callable[[], Any]],
    *,
    warmup: int = 2,
    repeats: int = 7,
    device: torch.device | str = "cpu",
) -> dict[str, Timing]:
    """Time each zero-argument callable ``repeats`` times, interleaved round-robin; see the module doc."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    synchronize(device)
    timings = {name: Timing() for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            t0 = time.perf_counter()
            candidates[name]()
            synchronize(device)
            timings[name].samples.append(time.perf_counter() - t0)
    return timings


def ratio(numerator: Timing, denominator: Timing) -> float:
    """median(numerator) / median(denominator)."""
    return numerator.median / denominator.median


def repeat(fn: Callable[[], Any], n: int) -> Callable[[], None]:
    """A candidate that calls ``fn`` ``n`` times: one timed sample long enough to measure."""
    if n == 1:
        return fn

    def run() -> None:
        for _ in range(n):
            fn()

    return run


def timing_settings(args: argparse.Namespace, *, full: int, quick: int, smoke: int = 2, warmup: int = 2,
                    smoke_warmup: int = 1) -> dict[str, int]:
    """``{"repeats", "warmup"}`` for the run's mode: ``--smoke``, ``--quick`` or full (``--repeats``, where the
    bench has it, overrides the last two)."""
    if args.smoke:
        return {"repeats": smoke, "warmup": smoke_warmup}
    return {"repeats": getattr(args, "repeats", None) or (quick if args.quick else full), "warmup": warmup}


def throughput(
    candidates: dict[str, Callable[[], Any]],
    *,
    tokens_per_call: float,
    calls_per_sample: int = 1,
    warmup: int,
    repeats: int,
    device: torch.device | str = "cpu",
    flops_per_token: float | None = None,
    peak_flops: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Time the candidates with :func:`interleaved` (a sample = ``calls_per_sample`` calls) and report per
    side ``{"timing", "tokens_per_s"}``, plus ``"flops_per_s"`` given ``flops_per_token`` and ``"mfu"``
    (FLOP/s / ``peak_flops``) given both."""
    timings = interleaved(
        {side: repeat(fn, calls_per_sample) for side, fn in candidates.items()}, warmup=warmup, repeats=repeats, device=device
    )
    sides = {}
    for side, t in timings.items():
        tokens_per_s = tokens_per_call * calls_per_sample / t.median
        sides[side] = {"timing": t.summary(), "tokens_per_s": tokens_per_s}
        if flops_per_token is not None:
            sides[side]["flops_per_s"] = tokens_per_s * flops_per_token
            if peak_flops is not None:
                sides[side]["mfu"] = tokens_per_s * flops_per_token / peak_flops
    return sides


def speedup(sides: dict[str, dict[str, Any]], side: str, reference: str) -> float:
    """tokens/s of ``side`` / tokens/s of ``reference`` (entries of :func:`throughput`'s result)."""
    return sides[side]["tokens_per_s"] / sides[reference]["tokens_per_s"]


# --- memory -----------------------------------------------------------------------------------------


def _proc_status_kb(key: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in KiB (None off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_child(queue, builder: Callable[..., Callable[[], Any]], kwargs: dict, calls: int, threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        run = builder(**kwargs)  # builds model, optimizer and inputs; returns the workload
        before = _proc_status_kb("VmRSS")
        if before is not None and _reset_peak_rss():
            for _ in range(calls):
                run()
            peak = _proc_status_kb("VmHWM")
        else:  # no /proc: ru_maxrss only grows, so this sees only what exceeds the build's peak
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            for _ in range(calls):
                run()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        queue.put({"peak_rss_growth_mb": (peak - before) / 1024, "peak_rss_mb": peak / 1024})
    except Exception as e:  # report, don't hang the parent
        queue.put({"error": repr(e)})


def peak_memory_cpu(builder: Callable[..., Callable[[], Any]], kwargs: dict, calls: int = 2) -> dict[str, float]:
    """Peak-RSS growth (MB) of running ``builder(**kwargs)()`` ``calls`` times, in a fresh process.

    ``builder`` must be a module-level function (it is imported by name in the child). The growth is
    measured from after the build (weights and inputs exist) to the end of the calls, so it covers the
    activations, gradients and optimizer state the workload allocates.
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_rss_child, args=(queue, builder, kwargs, calls, torch.get_num_threads()))
    process.start()
    try:
        result = queue.get(timeout=600)
    finally:
        process.join(timeout=60)
    return result


def peak_memory_cuda(run: Callable[[], Any], calls: int = 2) -> dict[str, float]:
    """torch.cuda.max_memory_allocated (MB) over ``calls`` runs, from a reset."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    for _ in range(calls):
        run()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {"peak_allocated_mb": peak / 2**20, "peak_growth_mb": (peak - base) / 2**20}


# --- the machine ------------------------------------------------------------------------------------


def matmul_peak_flops(
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", sizes: tuple[int, ...] | None = None, repeats: int = 5
) -> dict[str, Any]:
    """The measured matmul peak: for each size n, the median FLOP/s of ``A @ B`` (n x n, 2 n^3 FLOPs);
    the peak is the best of these medians."""
    device = torch.device(device)
    if sizes is None:
        sizes = (512, 1024, 2048) if device.type == "cpu" else (4096, 8192)
    per_size = {}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        inner = max(1, int(2e9 / (2 * n**3))) if device.type == "cpu" else 20  # ~1 GFLOP+ per sample
        t = interleaved({"mm": lambda: [torch.mm(a, b) for _ in range(inner)]}, warmup=1, repeats=repeats, device=device)
        per_size[n] = 2 * n**3 * inner / t["mm"].median
    return {"dtype": str(dtype).removeprefix("torch."), "peak_flops": max(per_size.values()), "per_size_flops": per_size}


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def machine_line(machine: dict[str, Any]) -> str:
    """The "Machine: ..." sentence of a results page, from :func:`machine_info`."""
    parts = [f"Machine: {machine['cpu']} ({machine['torch_threads']} threads)", f"torch {machine['torch']}"]
    if machine.get("transformers"):
        parts.append(f"transformers {machine['transformers']}")
    if machine.get("load_average_1m") is not None:
        parts.append(f"load average {machine['load_average_1m']:.1f} at start")
    return ", ".join(parts) + "."


# --- FLOPs ------------------------------------------------------------------------------------------


def matmul_params(n_layers: int, d_model: int, d_mlp: int, d_vocab_out: int) -> int:
    """N of the FLOP formula for a GPT-shaped decoder: per layer W_Q, W_K, W_V, W_O (4 d_model^2) and
    W_in, W_out (2 d_model d_mlp), plus the unembedding W_U (d_model d_vocab_out, tied or not)."""
    return n_layers * (4 * d_model * d_model + 2 * d_model * d_mlp) + d_model * d_vocab_out


def train_flops_per_token(n_matmul_params: int, n_layers: int, d_model: int, n_ctx: int) -> float:
    """6 N + 12 n_layers d_model n_ctx (see the module doc)."""
    return 6 * n_matmul_params + 12 * n_layers * d_model * n_ctx


# --- results ----------------------------------------------------------------------------------------


def write_results(name: str, data: dict[str, Any], markdown: str, results_dir: Path | None = None) -> Path:
    """Write ``core_<name>.json`` and ``core_<name>.md`` under ``bench/results`` (or ``results_dir``)."""
    out = Path(results_dir) if results_dir is not None else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / f"core_{name}.json").write_text(json.dumps(_jsonable(data), indent=2) + "\n")
    (out / f"core_{name}.md").write_text(markdown.rstrip() + "\n")
    return out / f"core_{name}.json"


def save_results(name: str, results: dict[str, Any], markdown: str, results_dir: Path | None = None) -> Path:
    """:func:`write_results`, after noting the load average at the end of the run beside the one at its start."""
    if "machine" in results:
        results["machine"]["load_average_1m_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    path = write_results(name, results, markdown, results_dir)
    print(f"wrote {path}")
    return path


def bench_options(parser: argparse.ArgumentParser, name: str, *, repeats: tuple[int, int] | None = None) -> argparse.ArgumentParser:
    """Add the options every core bench has besides its modes: ``--threads``, ``--results-dir`` and, given the
    (full, quick) defaults, ``--repeats``. ``--quick`` and ``--smoke`` stay in each script, which says what
    they mean there (and ``run_all.py`` passes them only to scripts whose source names them)."""
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=None,
                            help=f"timed samples per side (default {repeats[0]}, quick {repeats[1]})")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--results-dir", type=Path, default=None, help=f"where to write core_{name}.{{json,md}}")
    return parser


def parse_options(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and apply ``--threads``."""
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Timing):
        return value.summary()
    if hasattr(value, "__dataclass_fields__"):
        return _jsonable(asdict(value))
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_si(x: float, unit: str = "") -> str:
    """1.23e9 -> '1.23 G' (+ unit)."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".rstrip()
