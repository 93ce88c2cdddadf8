"""Circuit-finding methods, each scoring every candidate node (head, MLP) or edge of a model.

All of them see the same clean / corrupt input pairs and the same metric, the logit difference along
the direction in which corrupting the input moves the output (zero at BOS and padding):

    d[b, p]   = logits_clean[b, p] - logits_corrupt[b, p]                      [batch, pos, d_vocab_out]
    M_b(run)  = sum_p < logits_run[b, p], d[b, p] >                            one number per pair
    effect_b  = M_b(clean) - M_b(patched)          score = mean_b |effect_b|   (per-pair, then averaged)

    activation_patching_nodes   effect of patching one head / MLP's output with the corrupt run's
    activation_patching_edges   path patching: effect of patching one edge (the receiver alone sees
                                the sender's corrupt output); every edge, batched
    eap                         attribution patching (Nanda 2023; Syed et al. 2023): first-order
                                effect of an edge, (corrupt_s - clean_s) . dM/d in_r, one backward
    eap_ig                      EAP with integrated gradients (Hanna et al. 2024): dM/d in_r averaged
                                over inputs interpolated from corrupt to clean embeddings (5 steps)
    acdc                        ACDC (Conmy et al. 2023): from the logits back, remove each edge whose
                                removal moves the metric by < tau of the full corruption; its circuit
                                is what is left, its score the change it measured
    direct_logit_attribution    a node's output read by the unembedding, along d
    head_detectors              the lens's previous-token / first-token / duplicate / induction
                                detectors; a head's score is its best match (heads only)
    decompiler                  ``rasp.decompile`` (capped: decompiler.py): the heads and MLPs its
                                program's steps are read from; ranked by its own ablation effects

A method returns ``Scores``; what it *claims* (for precision / recall) is ``claimed`` if it says so
(ACDC, the decompiler), else every candidate scoring above 1% of its best (``head_detectors``: >= 0.5).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from glassformer.circuits.decompiler import decompiler_method
from glassformer.circuits.errors import CircuitsError
from glassformer.circuits.graph import CircuitGraph, Run
from glassformer.circuits.inputs import clean_corrupt_pairs

RELATIVE_THRESHOLD = 0.01
ACDC_TAU = 0.01
IG_STEPS = 5


@dataclass
class Scores:
    level: str  # "nodes" | "edges"
    candidates: list  # node names, or (sender, receiver) pairs
    scores: np.ndarray  # one per candidate, higher = more in the circuit
    claimed: set | None = None  # the method's own circuit (None: thresholded scores)
    seconds: float = 0.0
    note: str = ""  # what the method says about this model (the decompiler: its match, or why it refused)

    def circuit(self) -> set:
        if self.claimed is not None:
            return self.claimed
        top = float(self.scores.max()) if len(self.scores) else 0.0
        return {c for c, s in zip(self.candidates, self.scores) if top > 0 and s > RELATIVE_THRESHOLD * top}


class Context:
    """A model, its clean / corrupt pairs, their runs and the metric (computed once, shared by methods)."""

    def __init__(self, compiled, n_pairs: int = 16, seed: int = 0):
        self.compiled = compiled
        self.graph = CircuitGraph(compiled.model)
        rng = np.random.default_rng(seed)
        self.clean, self.corrupt, self.mask, self.corrupt_mask = clean_corrupt_pairs(compiled, n_pairs, rng)
        with torch.no_grad():
            self.clean_run = self.graph.forward(self.clean, attention_mask=self.mask)
            self.corrupt_run = self.graph.forward(self.corrupt, attention_mask=self.corrupt_mask)
        real = self.mask.clone()
        real[:, 0] = 0
        self.direction = (self.clean_run.logits - self.corrupt_run.logits) * real[..., None]  # [batch, pos, vocab]
        self.base = self.metric(self.clean_run.logits)  # [batch]

    def metric(self, logits: torch.Tensor) -> torch.Tensor:
        """M_b for logits [k * batch, pos, vocab] (k copies of the batch) -> [k * batch]."""
        d = self.direction.repeat(logits.shape[0] // self.direction.shape[0], 1, 1)
        return (logits * d).sum((-1, -2))

    def sweep(self, rows: list[tuple[int, int]], chunk: int = 64) -> np.ndarray:
        """mean_b |effect_b| of each patch row (one node or edge each), in batched forwards."""
        B = len(self.clean)
        out = []
        with torch.no_grad():
            for i in range(0, len(rows), chunk):
                r = torch.tensor(rows[i: i + chunk])  # [c, 2]
                c = len(r)
                run = self.graph.forward(self.clean.repeat(c, 1), attention_mask=self.mask.repeat(c, 1),
                                         corrupt=self.corrupt_run.senders.repeat(c, 1, 1, 1), rows=r.repeat_interleave(B, 0))
                eff = self.base.repeat(c) - self.metric(run.logits)  # [c * B]
                out.append(eff.view(c, B).abs().mean(1))
        return torch.cat(out).double().numpy() if out else np.zeros(0)


# -- the methods ------------------------------------------------------------------------------------


def activation_patching_nodes(ctx: Context) -> Scores:
    g = ctx.graph
    return Scores("nodes", list(g.nodes), ctx.sweep([g.node_row(n) for n in g.nodes]))


def activation_patching_edges(ctx: Context) -> Scores:
    g = ctx.graph
    return Scores("edges", list(g.edges), ctx.sweep([g.edge_row(s, r) for s, r in g.edges]))


def _edge_scores(ctx: Context, grads: torch.Tensor) -> Scores:
    """|(corrupt_s - clean_s) . grad_r| per pair, averaged: grads [batch, n_receivers, pos, d_model]."""
    g = ctx.graph
    delta = ctx.corrupt_run.senders - ctx.clean_run.senders  # [batch, n_senders, pos, d_model]
    per_pair = torch.einsum("bspd,brpd->bsr", delta, grads).abs().mean(0)  # [n_senders, n_receivers]
    scores = np.array([float(per_pair[g.s_index[s], g.r_index[r]]) for s, r in g.edges])
    return Scores("edges", list(g.edges), scores)


def _grads(ctx: Context, embed: torch.Tensor | None = None) -> torch.Tensor:
    run = ctx.graph.forward(ctx.clean, attention_mask=ctx.mask, embed=embed, keep_inputs=True)
    ctx.metric(run.logits).sum().backward()
    return run.input_grads().detach()


def eap(ctx: Context) -> Scores:
    return _edge_scores(ctx, _grads(ctx))


def eap_ig(ctx: Context, steps: int = IG_STEPS) -> Scores:
    clean_e, corrupt_e = ctx.clean_run.senders[:, 0], ctx.corrupt_run.senders[:, 0]  # [batch, pos, d_model]
    total = None
    for k in range(1, steps + 1):
        a = k / steps
        g = _grads(ctx, embed=corrupt_e + a * (clean_e - corrupt_e))
        total = g if total is None else total + g
    return _edge_scores(ctx, total / steps)


def acdc(ctx: Context, tau: float = ACDC_TAU) -> Scores:
    """Greedy edge pruning, receivers from the logits back (Conmy et al. 2023, Algorithm 1), with the
    distance |M(circuit) - M(clean)| / |M(corrupt) - M(clean)| averaged over pairs."""
    g = ctx.graph
    S, R = len(g.senders), len(g.receivers)
    patch = torch.zeros(1, S, R)  # 1 = edge removed (its receiver sees the corrupt sender)
    allowed = g.allowed()
    full = (ctx.base - ctx.metric(ctx.corrupt_run.logits)).abs().mean().clamp_min(1e-12)
    owner = [g.s_index.get(g.receiver_of(r)) for r in g.receivers]

    def distance() -> float:
        with torch.no_grad():
            run = g.forward(ctx.clean, attention_mask=ctx.mask, corrupt=ctx.corrupt_run.senders, patch=patch)
        return float((ctx.metric(run.logits) - ctx.base).abs().mean() / full)

    scores = torch.zeros(S, R)
    current = distance()
    for r in reversed(range(R)):
        o = owner[r]
        if o is not None and not bool(((patch[0, o] == 0) & allowed[o]).any()):
            patch[0, :, r] = allowed[:, r].float()  # the node feeds nothing that is left: drop its inputs untested
            continue
        for s in reversed(range(S)):
            if not allowed[s, r]:
                continue
            patch[0, s, r] = 1.0
            trial = distance()
            scores[s, r] = abs(trial - current)
            if trial - current < tau:
                current = trial
            else:
                patch[0, s, r] = 0.0
    kept = {(g.senders[s], g.receivers[r]) for s in range(S) for r in range(R) if allowed[s, r] and patch[0, s, r] == 0}
    return Scores("edges", list(g.edges), np.array([float(scores[g.s_index[s], g.r_index[r]]) for s, r in g.edges]),
                  claimed=kept)


def direct_logit_attribution(ctx: Context) -> Scores:
    g, m = ctx.graph, ctx.compiled.model
    outs = ctx.clean_run.senders[:, 1:]  # [batch, n_nodes, pos, d_model]
    logits = torch.einsum("bnpd,dv->bnpv", outs, m.unembed.W_U)  # [batch, n_nodes, pos, vocab]
    per_pair = torch.einsum("bnpv,bpv->bn", logits, ctx.direction).abs().mean(0)  # [n_nodes]
    return Scores("nodes", list(g.nodes), per_pair.double().numpy())


def head_detectors(ctx: Context) -> Scores:
    from glassformer.lens import detect_heads

    g = ctx.graph
    full = ctx.mask.all(1)
    tokens = ctx.clean[full] if full.any() else ctx.clean
    found = detect_heads(ctx.compiled.model, tokens)  # {detector: [layers, heads]}
    best = torch.stack([s.nan_to_num(0.0) for s in found.values()]).amax(0)  # [layers, heads]
    heads = [n for n in g.nodes if n.startswith("a")]
    scores = np.array([float(best[int(n[1:].split(".")[0]), int(n.split(".")[1])]) for n in heads])
    return Scores("nodes", heads, scores, claimed={h for h, s in zip(heads, scores) if s >= 0.5})


METHODS: dict[str, Callable[[Context], Scores]] = {
    "activation_patching_nodes": activation_patching_nodes,
    "activation_patching_edges": activation_patching_edges,
    "eap": eap,
    "eap_ig": eap_ig,
    "acdc": acdc,
    "direct_logit_attribution": direct_logit_attribution,
    "head_detectors": head_detectors,
    "decompiler": decompiler_method,
}


def register_method(name: str, fn: Callable[[Context], Scores]) -> None:
    """Add a method to every scoring run."""
    METHODS[name] = fn


def run_method(name: str, ctx: Context) -> Scores:
    if name not in METHODS:
        raise CircuitsError(f"no circuit method {name!r}; available: {', '.join(METHODS)}")
    start = time.perf_counter()
    scores = METHODS[name](ctx)
    scores.seconds = time.perf_counter() - start
    return scores
