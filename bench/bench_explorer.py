"""How fast the explorer answers: each kind of page interaction, timed end to end over HTTP.

The server is the real command (``python -m glassformer explore CONFIG --no-browser --threads T``) in its own
process; this script is the client (as the page is), sending the requests the page sends, one at a time, and
timing each from send to parsed JSON. Interactions, on a 2-layer model (d_model 64, 4 heads, 28 tokens, the
demo's shape; the weights do not change the cost):

    type          POST /api/run with the input one token longer or shorter (lengths 4..16), every view
    pick head     POST /api/run with another layer's patterns
    ablate        POST /api/run with one head zero-ablated (two passes: with and without)
    mean-ablate   POST /api/run with one head mean-ablated (plus 16 reference sequences)
    patch         POST /api/run with one head patched from a second input
    expand step   POST /api/step (the trace of this input already made)
    new trace     POST /api/path for an input not traced before
    sample        POST /api/generate, one token with the KV cache

Side by side, in the same run: the floor under "type" -- the model's bare forward pass, and the same
``Explorer.run`` called in-process (no HTTP) -- so the cost of the views and of the transport can be read off.
The bar: p95 < 100 ms for every interaction on 2 CPU cores. A GPT-2-shaped model (12 layers x 12 heads,
d_model 768, GPT-2's 50,257-token vocabulary, random weights) is timed for "type" and "pick head" too, with
the size of its answers: the page must stay usable there (one layer's patterns per answer, not 144 panels).

    python bench/bench_explorer.py [--quick | --smoke] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SMALL = {"arch": "decoder", "d_model": 64, "n_layers": 2, "n_heads": 4, "d_vocab": 28, "n_ctx": 32}
GPT2 = {"arch": "decoder", "d_model": 768, "n_layers": 12, "n_heads": 12, "d_vocab": 50257, "n_ctx": 1024}


class Served:
    """``glassformer explore CONFIG --no-browser`` in a subprocess; ``post``/``get`` time one request."""

    def __init__(self, config: dict, threads: int, folder: Path):
        path = folder / f"model_{config['n_layers']}x{config['n_heads']}.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "glassformer", "explore", str(path), "--no-browser",
                                      "--threads", str(threads)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        match = re.search(r"http://[\d.]+:\d+/", line)
        if not match:
            raise RuntimeError(f"the explorer did not start: {line}{self.proc.stderr.read()}")
        self.url = match.group(0)

    def post(self, route: str, body: dict) -> tuple[float, int, dict]:
        data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + "api/" + route, data=data, headers={"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as r:
            raw = r.read()
            out = json.loads(raw)
        return (time.perf_counter() - start) * 1000, len(raw), out

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def text_of(i: int, n: int) -> str:
    return " ".join(str((i * 7 + j * 3) % 28) for j in range(n))


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def summary(ms: list[float], sizes: list[int] | None = None) -> dict:
    out = {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2), "max_ms": round(max(ms), 2)}
    if sizes:
        out["answer_kb"] = round(sum(sizes) / len(sizes) / 1024, 1)
    return out


def interactions(server: Served, n: int, n_layers: int) -> dict[str, dict]:
    """Each interaction ``n`` times (after 3 untimed warm-up rounds), in rounds: one request of each kind per
    round, so a burst of load from other jobs on the shared machine falls on every kind alike."""
    cases = {
        "type": lambda i: ("run", {"text": text_of(i, 4 + i % 13)}),
        "pick head": lambda i: ("run", {"text": text_of(0, 12), "layer": i % n_layers}),
        "ablate": lambda i: ("run", {"text": text_of(0, 12), "ablate": [{"layer": i % n_layers, "head": i % 4}]}),
        "mean-ablate": lambda i: ("run", {"text": text_of(0, 12), "ablate": [{"layer": i % n_layers, "head": i % 4, "mode": "mean"}]}),
        "patch": lambda i: ("run", {"text": text_of(0, 12), "patch_text": text_of(1, 12),
                                    "ablate": [{"layer": i % n_layers, "head": i % 4, "mode": "patch"}]}),
        "expand step": lambda i: ("step", {"text": text_of(0, 12), "section": 1 + i % n_layers, "step": i % 12}),
        "new trace": lambda i: ("path", {"text": " ".join(str((i + j * j) % 28) for j in range(6 + i % 11))}),
        "sample": lambda i: ("generate", {"text": text_of(0, 4 + i % 20), "stream": "bench", "seed": i}),
    }
    for i in range(3):
        for make in cases.values():
            server.post(*make(i + 1000))
    timed: dict[str, list] = {name: [] for name in cases}
    for i in range(n):
        for name, make in cases.items():
            timed[name].append(server.post(*make(i)))
    results = {name: summary([t[0] for t in ts], [t[1] for t in ts]) for name, ts in timed.items()}
    for name, r in results.items():
        print(f"  {name:12s} {r}", flush=True)
    return results


def floor(n: int, threads: int) -> dict[str, dict]:
    """The model's bare forward and Explorer.run in this process, for the "type" inputs."""
    from glassformer import ModelConfig, Transformer
    from glassformer.explorer import Explorer, subject_of

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**SMALL)).eval()
    ex = Explorer(subject_of(model))
    fwd, run = [], []
    for i in range(n + 3):
        text = text_of(i, 4 + i % 13)
        tokens = torch.tensor([[int(t) for t in text.split()]])
        t0 = time.perf_counter()
        with torch.no_grad():
            model(tokens)
        t1 = time.perf_counter()
        ex.run({"text": text})
        t2 = time.perf_counter()
        if i >= 3:
            fwd.append((t1 - t0) * 1000)
            run.append((t2 - t1) * 1000)
    torch.set_num_threads(before)
    return {"bare forward (in-process)": summary(fwd), "Explorer.run (in-process, no HTTP)": summary(run)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 requests per interaction instead of 200")
    parser.add_argument("--smoke", action="store_true", help="5 requests per interaction, no GPT-2 shape (a test)")
    parser.add_argument("--threads", default="1,2", help="server torch threads to measure, comma-separated (default 1,2)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    n = 5 if args.smoke else 40 if args.quick else 200
    threads = [int(t) for t in args.threads.split(",")]
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                           "load_average_1m_start": os.getloadavg()[0]}, "requests_per_interaction": n, "small": SMALL, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for t in threads:
            print(f"2-layer model, server threads = {t}", flush=True)
            server = Served(SMALL, t, Path(tmp))
            try:
                results["runs"][f"2-layer, {t} thread(s)"] = {**floor(n, t), **interactions(server, n, SMALL["n_layers"])}
            finally:
                server.close()
        if not args.smoke:
            print("GPT-2 shape (12 x 12, d_model 768, 50,257 tokens), server threads = 1", flush=True)
            server = Served(GPT2, 1, Path(tmp))
            try:
                m = max(10, n // 4)
                gpt = {}
                tabs = {"attention tab": ["attention", "detectors"], "residual tab": ["lens", "dla"]}
                for length in (16, 64):
                    for tab, views in tabs.items():
                        name = f"type, {tab}, {length} tokens"
                        for i in range(2):
                            server.post("run", {"text": text_of(i, length), "views": views})
                        timed = [server.post("run", {"text": text_of(i, length), "views": views}) for i in range(m)]
                        gpt[name] = summary([x[0] for x in timed], [x[1] for x in timed])
                        print(f"  {name} {gpt[name]}", flush=True)
                for name, make in (("pick head (another layer), 16 tokens", lambda i: {"layer": i % 12}),
                                   ("ablate a head, 16 tokens", lambda i: {"ablate": [{"layer": i % 12, "head": i % 12}]})):
                    timed = [server.post("run", {"text": text_of(0, 16), "views": tabs["attention tab"], **make(i)}) for i in range(m)]
                    gpt[name] = summary([x[0] for x in timed], [x[1] for x in timed])
                    print(f"  {name} {gpt[name]}", flush=True)
                results["gpt2_shape"] = gpt
            finally:
                server.close()
    results["machine"]["load_average_1m_end"] = os.getloadavg()[0]
    write(results, args.results_dir, args.smoke)
    return results


def write(results: dict, folder: Path, smoke: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    name = "explorer_latency" + ("_smoke" if smoke else "")
    (folder / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = [f"# Explorer: time per interaction, end to end over HTTP ({results['requests_per_interaction']} requests each)", "",
             f"{m['cpus']} CPUs, load average {m['load_average_1m_start']:.1f} at the start, {m['load_average_1m_end']:.1f} at the end; "
             f"torch {m['torch']}. Server: `glassformer explore CONFIG --threads T` in its own process; client: this script "
             "(urllib), one request at a time. Bar: p95 < 100 ms on the 2-layer model.", ""]
    for run, rows in results["runs"].items():
        lines += [f"## {run}", "", "| interaction | p50 ms | p95 ms | max ms | answer KB | p95 < 100 ms |", "|---|---:|---:|---:|---:|---|"]
        for k, v in rows.items():
            ok = "" if "in-process" in k else ("met" if v["p95_ms"] < 100 else "**missed**")
            lines.append(f"| {k} | {v['p50_ms']} | {v['p95_ms']} | {v['max_ms']} | {v.get('answer_kb', '')} | {ok} |")
        lines.append("")
    if "gpt2_shape" in results:
        lines += ["## GPT-2 shape (12 layers x 12 heads, d_model 768, vocabulary 50,257; random weights; 1 thread)", "",
                  "The page asks only for what its open tab draws (`views`): the attention tab for one layer's patterns and the "
                  "detector scores, the residual tab for the logit lens (13 x pos x 50,257 logits) and the attribution.", "",
                  "| interaction | p50 ms | p95 ms | max ms | answer KB |", "|---|---:|---:|---:|---:|"]
        for k, v in results["gpt2_shape"].items():
            lines.append(f"| {k} | {v['p50_ms']} | {v['p95_ms']} | {v['max_ms']} | {v['answer_kb']} |")
    (folder / f"{name}.md").write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {folder / name}.md")


if __name__ == "__main__":
    main()
