"""A 1 GB text file trains without being loaded whole: `glassformer prepare` + a few training steps, peak RSS measured.

For each file size (default 1 GiB, and a 16 MiB control), the script

1. writes a text file of that size in /tmp (lines of words drawn with a fixed seed, written 1 MiB at a time);
2. runs ``glassformer prepare FILE --tokenizer char --out DIR`` in its own process (two passes over the file in
   4 MiB pieces: the characters, then the ids into ``tokens.bin``, uint16);
3. runs ``glassformer train --text DIR`` for a few steps in its own process (the token file memory-mapped: a batch
   reads only the windows it draws);

and records each process's wall time and peak memory, split into private memory and mapped file pages. If the
file were read whole, private memory would grow with its size (1 GiB of text is 4 GiB as Python's UTF-32 str);
it should be the same for 16 MiB and 1 GiB. The files are deleted afterwards.

    python bench/bench_data.py              # 1 GiB and 16 MiB (minutes: prepare reads 1 GiB twice)
    python bench/bench_data.py --smoke      # 8 MiB and 2 MiB, seconds
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine_info, markdown_table, save_results

MiB = 1 << 20
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an they "
         "you were her she there been one all we their has would when if so no will more what out up into do said").split()


def write_text(path: Path, size: int, seed: int = 0) -> int:
    """A text file of ``size`` bytes: lines of 6-14 words, 1 MiB written at a time (never all in memory)."""
    rng = np.random.default_rng(seed)
    written = 0
    with open(path, "w", encoding="ascii") as f:
        while written < size:
            words = np.array(WORDS)[rng.integers(0, len(WORDS), 200_000)]
            breaks = np.cumsum(rng.integers(6, 15, len(words) // 6))
            lines = [" ".join(words[a:b]) for a, b in zip(np.r_[0, breaks[:-1]], breaks) if b <= len(words)]
            block = ("\n".join(lines) + "\n")[: min(MiB, size - written)]
            f.write(block)
            written += len(block)
    return written


def _status_kb(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon (private memory) and RssFile (mapped file pages) of a running process, in kB."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:  # it has just exited
        return {}
    fields = (line.split(":", 1) for line in lines if line.startswith(("VmRSS:", "RssAnon:", "RssFile:")))
    return {key: int(value.split()[0]) for key, value in fields}


def measured(argv: list[str]) -> dict:
    """Run ``python -m glassformer ARGV`` as a child process: its wall time, its peak RSS and the
    peaks of its private memory (RssAnon) and of its mapped file pages (RssFile: libraries, and the token file's
    pages while they sit in the page cache, which the kernel may drop at any time), sampled every 20 ms."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "glassformer", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peaks: dict[str, int] = {}
    while child.poll() is None:  # (its output is a few lines: the pipe never fills)
        for key, kb in _status_kb(child.pid).items():
            peaks[key] = max(peaks.get(key, 0), kb)
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    output = child.stdout.read().decode(errors="replace")
    if child.returncode != 0:
        raise SystemExit(f"glassformer {' '.join(argv)} failed ({child.returncode}):\n{output}")
    return {"seconds": seconds, "peak_rss_mb": peaks.get("VmRSS", 0) / 1024, "peak_anon_mb": peaks.get("RssAnon", 0) / 1024,
            "peak_file_mb": peaks.get("RssFile", 0) / 1024, "output": output.strip().splitlines()[-2:]}


def drop_from_page_cache(path: Path) -> None:
    """Evict this one file's clean pages from the page cache (POSIX_FADV_DONTNEED), so training reads it cold, as it
    would a corpus written long before; other files are not touched."""
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def one_size(size: int, steps: int, work: Path) -> dict:
    text, prepared, run = work / "corpus.txt", work / "prepared", work / "run"
    write_text(text, size)
    prep = measured(["prepare", str(text), "--tokenizer", "char", "--out", str(prepared), "--quiet"])
    tokens_bytes = (prepared / "tokens.bin").stat().st_size
    drop_from_page_cache(prepared / "tokens.bin")
    train = measured(["train", "--text", str(prepared), "--steps", str(steps), "--block-size", "64", "--batch-size", "16",
                      "--d-model", "64", "--n-layers", "2", "--n-heads", "4", "--eval-every", "0", "--eval-batches", "2",
                      "--quiet", "--out", str(run)])
    for path in (text, prepared, run):  # the gigabytes go at once
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return {"file_mib": size / MiB, "tokens_bin_mib": tokens_bytes / MiB, "prepare": prep, "train": train, "steps": steps}


def memory(step: dict) -> str:
    return f"{step['peak_rss_mb']:.0f} MB ({step['peak_anon_mb']:.0f} / {step['peak_file_mb']:.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="8 MiB and 2 MiB files, for a quick check")
    parser.add_argument("--sizes-mib", default=None, help="comma-separated file sizes in MiB (default: 1024,16)")
    parser.add_argument("--steps", type=int, default=20, help="training steps (default: 20)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where to write core_data.{json,md}")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes_mib or ("8,2" if args.smoke else "1024,16")).split(",")]
    machine = machine_info()
    rows = []
    with tempfile.TemporaryDirectory(prefix="glassformer-bench-data-", dir="/tmp") as tmp:
        for mib in sizes:
            result = one_size(mib * MiB, args.steps, Path(tmp))
            rows.append(result)
            print(f"{mib} MiB: prepare {result['prepare']['seconds']:.0f} s, {memory(result['prepare'])}; "
                  f"train {result['steps']} steps {result['train']['seconds']:.0f} s, {memory(result['train'])}")
    table = markdown_table(
        ["text file", "tokens.bin", "prepare: time", "prepare: peak RSS (private / mapped files)", f"train ({args.steps} steps): time",
         "train: peak RSS (private / mapped files)"],
        [[f"{r['file_mib']:,.0f} MiB", f"{r['tokens_bin_mib']:,.0f} MiB", f"{r['prepare']['seconds']:.0f} s", memory(r["prepare"]),
          f"{r['train']['seconds']:.0f} s", memory(r["train"])] for r in rows],
    )
    md = (f"# Streaming a large text file: `glassformer prepare` + training, peak RSS\n\n{table}\n\n"
          "Each step is its own process (`python -m glassformer ...`, one torch thread), its memory sampled every 20 ms "
          "from /proc: peak resident set, of it private memory (RssAnon: Python, PyTorch, the model, a 4 MiB piece of "
          "text being tokenized) and mapped file pages (RssFile: shared libraries, and the token file's pages while the "
          "page cache holds them; the kernel drops those under memory pressure). The token file is evicted from the page "
          "cache before training, as a corpus prepared long before would be. A character tokenizer; the model is 2 "
          "layers, d_model 64, batch 16 x 64. The files were written to /tmp and deleted afterwards.\n\n"
          f"Machine: {machine.get('cpu')}, load {machine.get('load_average_1m') or 0:.1f} at the start (times are not comparable "
          "across loads; the RSS is the point).\n")
    save_results("data", {"machine": machine, "rows": rows, "steps": args.steps}, md, args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
