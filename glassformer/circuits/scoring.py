"""Score every method on every model of a suite against the ground truth.

Per model and method (``rows.jsonl``, one JSON object a line):

    precision = |claimed & true| / |claimed|       recall = |claimed & true| / |true|
    auroc     = P(score of a true candidate > score of a false one)   (ties count 1/2; Mann-Whitney)

over the method's candidates (node methods: heads and MLPs, head detectors: heads; edge methods: every
edge). Undefined values (nothing claimed, no true or no false candidate) are left out of the means.
``recall_varying`` is the recall on the true edges other than ``truth.constant_edges`` (edges from the
embedding that carry only what every input shares: the ``bos`` dimension, positions, constants), which
no method that resamples the input can see.

    DIR/scores.json   {"models": N, "methods": {NAME: {"precision", "recall", "auroc", "seconds"}}}
                      (means over models; seconds: total over the suite)
    DIR/rows.jsonl    the per-model rows;  DIR/table.md  a table per method and model kind;
    DIR/below_chance.md  every (model, method) whose AUROC is below 0.5, with the true candidates it ranked last
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from glassformer.circuits.methods import METHODS, Context, run_method


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (average ranks for ties); NaN without both classes."""
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average rank over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i: j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def score_model(row: dict, compiled, truth, methods: list[str], n_pairs: int = 16, seed: int = 0) -> list[dict]:
    """One row per method for one model."""
    ctx = Context(compiled, n_pairs=n_pairs, seed=seed)
    true_nodes, true_edges = set(truth.nodes), set(truth.edges)
    constant = set(truth.constant_edges)
    rows = []
    for name in methods:
        s = run_method(name, ctx)
        true = true_nodes if s.level == "nodes" else true_edges
        labels = np.array([c in true for c in s.candidates], dtype=bool)
        claimed = s.circuit()
        hit = len(claimed & true)
        n_true = int(labels.sum())
        true_here = true & set(s.candidates)  # head detectors only see heads
        varying = true_here - constant
        out = {
            "model": row["id"], "kind": row.get("kind", "compiled"), "source": row.get("source", ""),
            "distractor": row.get("distractor_seed") is not None or row.get("distractor_program") is not None,
            "method": name, "level": s.level,
            "candidates": len(s.candidates), "true": n_true, "claimed": len(claimed), "hits": hit,
            "precision": hit / len(claimed) if claimed else None,
            "recall": hit / n_true if n_true else None,
            "recall_varying": len(claimed & varying) / len(varying) if varying else None,
            "auroc": _nan_none(auroc(np.asarray(s.scores, dtype=float), labels)),
            "seconds": round(s.seconds, 4),
        }
        if s.note:
            out["note"] = s.note
        if out["auroc"] is not None and out["auroc"] < 0.5:
            ranked = sorted(zip(s.scores, s.candidates, labels), key=lambda t: t[0])
            out["lowest_true"] = [str(c) for sc, c, lab in ranked if lab][:5]
            out["highest_false"] = [str(c) for sc, c, lab in reversed(ranked) if not lab][:5]
        rows.append(out)
    return rows


def _nan_none(x: float):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def summarise(rows: list[dict], n_models: int) -> dict:
    """scores.json: means over models of each method's precision, recall and AUROC; total seconds."""
    by = defaultdict(list)
    for r in rows:
        by[r["method"]].append(r)
    methods = {}
    for name, rs in by.items():
        methods[name] = {k: _mean([r[k] for r in rs]) for k in ("precision", "recall", "auroc")}
        methods[name]["seconds"] = round(sum(r["seconds"] for r in rs), 3)
    return {"models": n_models, "methods": methods}


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(float(np.mean(xs)), 4) if xs else None


def score_suite(models, out: str | Path, *, methods: list[str] | None = None, n_pairs: int = 16,
                progress: bool = True) -> dict:
    """Score ``models`` ([(row, compiled, truth)], e.g. from ``load_suite``); write the files above."""
    methods = list(METHODS) if methods is None else methods
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for row, compiled, truth in tqdm(models, desc="circuits score", disable=not progress, unit="model"):
        rows += score_model(row, compiled, truth, methods, n_pairs=n_pairs)
    summary = summarise(rows, len(models))
    (out / "scores.json").write_text(json.dumps(summary, indent=1))
    (out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "table.md").write_text(table(rows))
    (out / "below_chance.md").write_text(below_chance(rows))
    return summary


def table(rows: list[dict]) -> str:
    """Markdown: one line per method and model kind (all / compiled / with distractor / trained)."""
    groups = {"all": lambda r: True, "compiled, alone": lambda r: r["kind"] == "compiled" and not r["distractor"],
              "compiled + distractor": lambda r: r["kind"] == "compiled" and r["distractor"],
              "Tracr library ports": lambda r: r["source"] == "tracr",
              "compiled-then-trained": lambda r: r["kind"] == "trained"}
    lines = ["| method | level | models | precision | recall | recall (varying edges) | AUROC | AUROC < 0.5 | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["method"] for r in rows):
        for gname, keep in groups.items():
            rs = [r for r in rows if r["method"] == name and keep(r)]
            if not rs:
                continue
            below = sum(1 for r in rs if r["auroc"] is not None and r["auroc"] < 0.5)
            fmt = lambda k: "-" if _mean([r[k] for r in rs]) is None else f"{_mean([r[k] for r in rs]):.3f}"  # noqa: E731
            lines.append(f"| {name} ({gname}) | {rs[0]['level']} | {len(rs)} | {fmt('precision')} | {fmt('recall')} | "
                         f"{fmt('recall_varying')} | {fmt('auroc')} | {below} | {sum(r['seconds'] for r in rs):.1f} |")
    return "\n".join(lines) + "\n"


def below_chance(rows: list[dict]) -> str:
    bad = [r for r in rows if r["auroc"] is not None and r["auroc"] < 0.5]
    lines = [f"# AUROC below chance: {len(bad)} of {sum(1 for r in rows if r['auroc'] is not None)} (model, method) pairs", ""]
    if bad:
        lines += ["| method | model | AUROC | true / candidates | true candidates ranked lowest | false ranked highest |",
                  "|---|---|---|---|---|---|"]
        for r in sorted(bad, key=lambda r: (r["method"], r["auroc"])):
            lines.append(f"| {r['method']} | {r['model']} | {r['auroc']:.3f} | {r['true']} / {r['candidates']} | "
                         f"{', '.join(r.get('lowest_true', []))} | {', '.join(r.get('highest_false', []))} |")
    return "\n".join(lines) + "\n"
