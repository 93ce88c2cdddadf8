"""Trained vs compiled: train an ordinary glassformer model on the task a RASP program solves, decompile
both it and the compiled model (``rasp.decompile``), and put them side by side -- accuracy, size, the
decompiled programs, and each program step with the component it maps to and its interchange-intervention
accuracy (IIA); and how well the trained model's program agrees with the original program.

The attention-pattern score (1 - total variation between a trained head and a compiled head) is no
longer part of the comparison: measured on reverse, histogram, frac_prevs and sort it did not separate a
trained head from an untrained model or from trivial patterns (uniform attention and "attend to self"
scored as high or higher).  ``train_and_compare(..., pattern_scores=True)`` still computes it.

The task: inputs are random sequences of 1..max_len tokens from the vocabulary, laid out as the
compiled model reads them ([BOS, x_1, ..., x_n], padded); the target at each position is the program's
output there (as a class: one of the output values).  Examples come from the interpreter, in a fixed
pool for training and a disjoint one for evaluation.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from glassformer.errors import ConfigError
from glassformer.model import ModelConfig, Transformer
from glassformer.rasp.compiler.compiled import CompiledModel, to_json
from glassformer.rasp.compiler.weights import FIRST_TOKEN_ID, PAD_ID
from glassformer.rasp.errors import RaspEvaluationError
from glassformer.rasp.interpreter import evaluate
from glassformer.train.batch import Batch


class RaspTask:
    """The task a compiled program solves, in the Trainer's interface (``batch(batch_size, arch, generator)``)."""

    name = "rasp"

    def __init__(self, compiled: CompiledModel, n_examples: int = 4000, seed: int = 0):
        self.compiled = compiled
        self.program = compiled.program
        self.classes = list(compiled.output.values if compiled.output.numerical else compiled.output.classes)
        if compiled.output.numerical and not compiled.output.values:
            raise ConfigError("compare needs a program whose outputs can be listed (a finite set of values)")
        self.class_of = {_key(v): i for i, v in enumerate(self.classes)}
        rng = random.Random(seed)
        self.examples = self._draw(rng, n_examples)
        self.options = {"program": compiled.program_name}

    def _draw(self, rng: random.Random, n: int) -> list[tuple[list, list[int]]]:
        out, tries = [], 0
        while len(out) < n and tries < 20 * n:
            tries += 1
            xs = [rng.choice(self.compiled.vocab) for _ in range(rng.randint(1, self.compiled.max_len))]
            try:
                ys = evaluate(self.program, xs)
            except RaspEvaluationError:
                continue  # an input the program rejects (e.g. an ambiguous aggregate)
            out.append((xs, [self.class_of[_key(y)] for y in ys]))
        if not out:
            raise ConfigError("the program rejects every random input; nothing to train on")
        return out

    def with_split(self, split: str) -> RaspTask:
        if split == "train":
            return self
        held = object.__new__(RaspTask)
        held.__dict__.update(self.__dict__)
        held.examples = self._draw(random.Random(12345), max(256, len(self.examples) // 8))
        return held

    def batch(self, batch_size: int, arch: str = "encoder", generator: torch.Generator | None = None) -> Batch:
        idx = torch.randint(0, len(self.examples), (batch_size,), generator=generator).tolist()
        return self.layout([self.examples[i] for i in idx])

    def layout(self, examples) -> Batch:
        """[BOS, x_1.., PAD..] with targets at 1..n, as the compiled model reads them."""
        width = self.compiled.max_len + 1
        B = len(examples)
        inputs = torch.full((B, width), PAD_ID, dtype=torch.long)  # [batch, pos]
        targets = torch.zeros((B, width), dtype=torch.long)
        loss_mask = torch.zeros((B, width), dtype=torch.bool)
        attention = torch.zeros((B, width), dtype=torch.long)
        for b, (xs, ys) in enumerate(examples):
            n = len(xs)
            inputs[b, : n + 1] = self.compiled.encode(xs)
            targets[b, 1 : n + 1] = torch.tensor(ys)
            loss_mask[b, 1 : n + 1] = True
            attention[b, : n + 1] = 1
        return Batch(inputs, targets, loss_mask, attention_mask=attention)


def _key(v):
    return (type(v) is bool, v)


@dataclass
class Comparison:
    program: str
    trained: dict  # accuracy and size of the trained model
    compiled: dict  # the same for the compiled model
    selectors: list[str]  # compiled heads, "L{layer}H{head} node"
    trained_heads: list[str]  # "L{layer}H{head}"
    scores: list[list[float]]  # [trained head][selector] pattern score (1 - total variation), if asked for
    best: dict = field(default_factory=dict)  # selector -> (best trained head, score)
    example: dict = field(default_factory=dict)  # one input: each selector's pattern and its best trained head's
    programs: dict = field(default_factory=dict)  # "trained" / "compiled" -> the decompiled program and its steps

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """Markdown: the two models side by side, then each decompiled program's steps with their IIA."""
        rows = ["| | trained | compiled |", "|---|---|---|"]
        for key in ("token_accuracy", "sequence_accuracy", "layers", "heads", "d_model", "params"):
            t, c = self.trained.get(key), self.compiled.get(key)
            fmt = (lambda v: f"{v:.4f}") if "accuracy" in key else (lambda v: f"{v:,}")
            rows.append(f"| {key} | {fmt(t)} | {fmt(c)} |")
        if self.programs:
            t, c = self.programs["trained"], self.programs["compiled"]
            for key, label in (("match_sequence", "decompiled program = model (per input)"),
                               ("agree_with_program", "decompiled program = original program (per input)"),
                               ("ops", "decompiled program: operations"), ("table_entries", "decompiled program: table entries"),
                               ("mean_iia", "mean IIA of its steps")):
                fmt = (lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else f"{v:,}"))
                rows.append(f"| {label} | {fmt(t.get(key))} | {fmt(c.get(key))} |")
            for side in ("trained", "compiled"):
                rows += ["", f"Decompiled {side} model, step by step:", "", "| step | kind | read from | mapped to | IIA |",
                         "|---|---|---|---|---|"]
                for st in self.programs[side]["steps"]:
                    iia = "-" if st["iia"] is None else f"{st['iia']:.3f}"
                    rows.append(f"| {st['name']} | {st['kind']} | {', '.join(st['components'])} | "
                                f"{st['mapped_component'] or '-'} | {iia} |")
        if self.scores:
            rows += ["", "Pattern score (1 - total variation) of each trained head against each compiled selector:", "",
                     "| trained head | " + " | ".join(self.selectors) + " |", "|---" * (len(self.selectors) + 1) + "|"]
            for head, scores in zip(self.trained_heads, self.scores):
                rows.append(f"| {head} | " + " | ".join(f"{s:.3f}" for s in scores) + " |")
        return "\n".join(rows)


def decompiled_summary(result, original, inputs) -> dict:
    """The JSON a comparison keeps of one decompiled program, with its agreement with ``original``."""
    from glassformer.rasp.decompile.roundtrip import agreement

    report = result.report()
    iias = [s["iia"] for s in report["steps"] if s["iia"] is not None]
    entries = ops = 0
    from glassformer.rasp import language as L
    from glassformer.rasp.decompile.program import PairSet, Table

    for expr in L.walk(result.program):
        if isinstance(expr, (L.Tokens, L.Indices)):
            continue
        ops += 1
        for fn in (getattr(expr, "f", None), getattr(getattr(expr, "predicate", None), "fn", None)):
            entries += len(fn.mapping) if isinstance(fn, Table) else len(fn.pairs) if isinstance(fn, PairSet) else 0
    return {"source": result.source, "match_sequence": result.match_sequence, "match_position": result.match_position,
            "agree_with_program": agreement(original, result.program, inputs)["agree"], "ops": ops,
            "table_entries": entries, "mean_iia": sum(iias) / len(iias) if iias else None,
            "steps": [{k: st[k] for k in ("name", "kind", "components", "mapped_component", "iia")}
                      for st in report["steps"]]}


def trained_probe(model: Transformer, compiled: CompiledModel, classes: list):
    """A decompiler probe for a model trained on :class:`RaspTask`: the compiled model's input layout,
    outputs read as the task's classes."""
    from dataclasses import replace

    from glassformer.rasp.decompile.probe import compiled_probe

    def decode(logits):
        return [classes[i] for i in logits.argmax(-1).tolist()]

    return replace(compiled_probe(compiled), model=model, decode=decode, kind="trained",
                   description=f"encoder trained on {compiled.program_name}")


def train_and_compare(compiled: CompiledModel, *, steps: int = 1500, d_model: int = 64, n_layers: int | None = None,
                      n_heads: int | None = None, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
                      n_examples: int = 4000, device: str = "cpu", quiet: bool = True, pattern_scores: bool = False,
                      n_decompile: int = 600) -> tuple[Comparison, Transformer]:
    """Train a model on ``compiled``'s task, decompile it and the compiled model (``n_decompile`` inputs
    each), and compare; returns the comparison and the trained model."""
    from glassformer.rasp.decompile import decompile
    from glassformer.train.trainer import TrainConfig, Trainer, evaluate as evaluate_model

    task = RaspTask(compiled, n_examples=n_examples, seed=seed)
    cc = compiled.model.config
    config = ModelConfig(  # the compiled model's vocabulary, context and depth; a trainable width
        arch="encoder", d_model=d_model, n_layers=n_layers or cc.n_layers, n_heads=n_heads or max(2, cc.n_heads),
        d_vocab=cc.d_vocab, d_vocab_out=len(task.classes), n_ctx=cc.n_ctx)
    torch.manual_seed(seed)
    model = Transformer(config)
    train_config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(100, steps // 10),
                               eval_every=0, eval_batches=4, seed=seed, device=device, quiet=quiet,
                               stop_at_accuracy=None)
    trainer = Trainer(model, task, train_config, spec={"name": "rasp", "options": task.options})
    trainer.train()
    model = trainer.model.cpu().eval()

    held = task.with_split("val")
    eval_batch = held.layout(held.examples)
    trained_acc = evaluate_model(model, _Fixed(eval_batch), n_batches=1, batch_size=len(held.examples))
    compiled_acc = _compiled_accuracy(compiled, held)
    scores, selectors, heads, example, best = [], [], [], {}, {}
    if pattern_scores:
        scores, selectors, heads, example = _pattern_scores(model, compiled, eval_batch)
        for j, sel in enumerate(selectors):
            i = max(range(len(heads)), key=lambda i: scores[i][j])
            best[sel] = (heads[i], scores[i][j])
        example = {"tokens": example["tokens"], "compiled": example["compiled"],
                   "trained": [example["trained"][best[sel][0]] for sel in selectors]}
    n_pairs = max(20, n_decompile // 5)
    inputs = [xs for xs, _ in held.examples]
    programs = {
        "trained": decompiled_summary(decompile(None, probe=trained_probe(model, compiled, task.classes),
                                                n_inputs=n_decompile, n_match=n_decompile, n_pairs=n_pairs, seed=seed),
                                      compiled.program, inputs),
        "compiled": decompiled_summary(decompile(compiled, n_inputs=n_decompile, n_match=n_decompile, n_pairs=n_pairs,
                                                 seed=seed), compiled.program, inputs),
    }
    comparison = Comparison(
        compiled.program_name,
        {"token_accuracy": trained_acc["token_accuracy"], "sequence_accuracy": trained_acc["sequence_accuracy"],
         "layers": config.n_layers, "heads": config.n_layers * config.n_heads, "d_model": config.d_model,
         "params": model.num_params(), "steps": steps},
        {**compiled_acc, "layers": cc.n_layers, "heads": sum(1 for b in compiled.blocks if b.kind == "attention"),
         "d_model": cc.d_model, "params": compiled.model.num_params()},
        selectors, heads, scores, best, example, programs,
    )
    return comparison, model


class _Fixed:
    """One fixed batch in the task interface (for the trainer's ``evaluate``)."""

    def __init__(self, batch: Batch):
        self._batch = batch

    def batch(self, batch_size, arch="encoder", generator=None) -> Batch:
        return self._batch


def _compiled_accuracy(compiled: CompiledModel, held: RaspTask) -> dict:
    outputs = compiled.run_batch([xs for xs, _ in held.examples])
    tokens = right = seqs = 0
    for (xs, ys), got in zip(held.examples, outputs):
        hits = [held.class_of.get(_key(g)) == y for g, y in zip(got, ys)]
        right += sum(hits)
        tokens += len(hits)
        seqs += all(hits)
    return {"token_accuracy": right / tokens, "sequence_accuracy": seqs / len(held.examples)}


@torch.no_grad()
def _pattern_scores(trained: Transformer, compiled: CompiledModel, batch: Batch):
    """Mean over inputs of lens.pattern_score(trained head pattern, compiled head pattern, "tv")."""
    from glassformer.lens import pattern_score

    mask = batch.attention_mask
    heads_c, names_c, per_layer = [], [], {}
    for b in compiled.blocks:  # heads are numbered in block order within each layer
        if b.kind == "attention":
            h = per_layer.get(b.layer, 0)
            per_layer[b.layer] = h + 1
            heads_c.append((b.layer, h))
            names_c.append(f"L{b.layer}H{h} {b.node}")
    _, cache_c = compiled.model.run_with_cache(batch.inputs, attention_mask=mask,
                                               names=lambda n: n.endswith("attn.pattern"))
    _, cache_t = trained.run_with_cache(batch.inputs, attention_mask=mask, names=lambda n: n.endswith("attn.pattern"))
    query_mask = batch.loss_mask  # [batch, pos]: real positions, not BOS or padding
    cfg = trained.config
    names_t, scores = [], []
    lengths = mask.sum(-1)  # [batch]
    ex = int(torch.argmax(lengths))  # the longest held-out input, to draw
    n = int(lengths[ex])
    example = {"tokens": [compiled.vocab[i - FIRST_TOKEN_ID] if i >= FIRST_TOKEN_ID else "BOS"
                          for i in batch.inputs[ex, :n].tolist()],
               "compiled": [cache_c[f"blocks.{lc}.attn.pattern"][ex, hc, :n, :n].tolist() for lc, hc in heads_c],
               "trained": {}}
    for lt in range(cfg.n_layers):
        pt = cache_t[f"blocks.{lt}.attn.pattern"].float()  # [batch, heads, q, k]
        for ht in range(cfg.n_heads):
            names_t.append(f"L{lt}H{ht}")
            row = []
            for lc, hc in heads_c:
                ref = cache_c[f"blocks.{lc}.attn.pattern"][:, hc].float()  # [batch, q, k]
                s = pattern_score(pt[:, ht], ref, method="tv", query_mask=query_mask)  # [batch]
                row.append(float(torch.nanmean(s)))
            scores.append(row)
            example["trained"][names_t[-1]] = pt[ex, ht, :n, :n].tolist()
    return scores, names_c, names_t, example


def plot(comparison: Comparison, path: str | Path) -> Path:
    """The decompiled programs side by side: each step's IIA against the component it maps to, for the
    trained and the compiled model, with accuracy, size and match in the titles.  (A comparison made
    with ``pattern_scores=True`` and no programs gets the pattern-score figure.)"""
    if not comparison.programs:
        return _plot_pattern_scores(comparison, path)
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sides = ("trained", "compiled")
    n = max(len(comparison.programs[s]["steps"]) for s in sides)
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * n * 2), 3.8), sharey=True)
    for ax, side in zip(axes, sides):
        prog, model = comparison.programs[side], getattr(comparison, side)
        steps = [st for st in prog["steps"] if st["kind"] != "output"]
        ax.bar(range(len(steps)), [st["iia"] or 0 for st in steps], color="tab:blue" if side == "trained" else "tab:green")
        ax.set_xticks(range(len(steps)), [f"{st['name']}\n-> {st['mapped_component']}" for st in steps], rotation=30,
                      ha="right", fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{side}: sequence accuracy {model['sequence_accuracy']:.3f}, {model['params']:,} params\n"
                     f"decompiled: {prog['ops']} ops, match {prog['match_sequence']:.3f}, "
                     f"= original {prog['agree_with_program']:.3f}", fontsize=8)
    axes[0].set_ylabel("IIA of each step")
    fig.suptitle(f"{comparison.program}: trained vs compiled, decompiled", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_pattern_scores(comparison: Comparison, path: str | Path) -> Path:
    """Top: the head-by-selector score heatmap, with both models' accuracy and size in the title.
    Below, on one held-out input: each compiled head's pattern over the best-matching trained head's."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    scores = torch.tensor(comparison.scores)
    n_sel = max(1, scores.shape[1])
    example = comparison.example or {}
    show = bool(example.get("compiled"))
    width = max(6.5, 1.6 + 1.3 * n_sel, 3.2 * n_sel if show else 0)
    heights = [1.4 + 0.45 * max(1, scores.shape[0])] + ([2.6] if show else [])
    fig = plt.figure(figsize=(width, sum(heights)))
    grid = fig.add_gridspec(len(heights), 2 * n_sel, height_ratios=heights)
    ax = fig.add_subplot(grid[0, :])
    im = ax.imshow(scores.numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(comparison.selectors)), comparison.selectors, rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(comparison.trained_heads)), comparison.trained_heads, fontsize=8)
    for i in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            ax.text(j, i, f"{scores[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if scores[i, j] < 0.6 else "black")
    t, c = comparison.trained, comparison.compiled
    ax.set_title(f"{comparison.program}: trained sequence accuracy {t['sequence_accuracy']:.3f} ({t['params']:,} params)"
                 f"\ncompiled {c['sequence_accuracy']:.3f} ({c['params']:,} params)", fontsize=9)
    ax.set_xlabel("compiled head", fontsize=8)
    ax.set_ylabel("trained head", fontsize=8)
    fig.colorbar(im, ax=ax, label="pattern score (1 - TV)")
    if show:
        ticks = example["tokens"]
        for j, sel in enumerate(comparison.selectors):
            head = comparison.best[sel][0]
            for side, (pattern, title) in enumerate([(example["compiled"][j], f"compiled {sel}"),
                                                      (example["trained"][j], f"best trained: {head}")]):
                a = fig.add_subplot(grid[1, 2 * j + side])
                a.imshow(pattern, vmin=0, vmax=1, cmap="Blues")
                a.set_title(title, fontsize=7)
                a.set_xticks(range(len(ticks)), ticks, fontsize=6)
                a.set_yticks(range(len(ticks)), ticks, fontsize=6)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(comparison: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """compare.json, compare.md and compare.png in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(comparison.to_dict(), indent=1, default=to_json) + "\n")
    (out / "compare.md").write_text(f"# {comparison.program}: trained vs compiled\n\n{comparison.table()}\n")
    return {"json": out / "compare.json", "md": out / "compare.md", "png": plot(comparison, out / "compare.png")}


__all__ = ["Comparison", "RaspTask", "decompiled_summary", "plot", "train_and_compare", "trained_probe", "write"]
