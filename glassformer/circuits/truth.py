"""Ground truth: which heads, MLPs and edges a compiled model's output depends on, and a causal check of it.

A compiled model gives every RASP value its own residual dimensions (``compiled.residual_labels``), and
every head and MLP reads and writes only the dimensions of the values its operation uses; every other
weight is exactly zero. So the plan's dependency graph can be read back from the weights:

    writes(s) = dims with a nonzero column in s's output matrix (W_E / W_pos, W_O[h], W_out)
    reads(r)  = dims with a nonzero row in r's input matrix (W_Q[h], W_K[h], W_V[h], W_in, W_U)
    edge (s, r) exists  <=>  s precedes r  and  writes(s) & reads(r) is not empty

The true circuit is the part of that graph on a path to ``logits``: heads and MLPs
that compute a value the output needs, and the edges that carry it. Empty head slots, and the whole
second program of a model with a distractor (``merge.py``), lie off every path. (The compiler's plan
is not kept by ``CompiledModel``; reading it back from the weights is exact for compiled weights and
is what ``ground_truth`` tests.)

``ground_truth`` ablates each node and each edge, one at a time (zeroed, and resampled from another
input), on sample inputs: a member should change some decoded output, a non-member none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from glassformer.circuits.graph import CircuitGraph
from glassformer.circuits.inputs import decode_ids, sample_tokens
from glassformer.rasp.compiler.weights import FIRST_TOKEN_ID


@dataclass
class GroundTruth:
    nodes: list[str]  # heads 'a{L}.{h}' and MLPs 'm{L}' in the circuit
    edges: list[tuple[str, str]]  # (sender, receiver) in the circuit
    positions: dict[str, list[str]] = field(default_factory=dict)  # node -> where it writes: ["bos", "tokens"]
    causal: dict = field(default_factory=dict)  # the causal check's counts
    constant_edges: list[tuple[str, str]] = field(default_factory=list)  # true edges from the embedding that carry only what every input shares

    def to_json(self) -> dict:
        return {"nodes": self.nodes, "edges": [list(e) for e in self.edges], "positions": self.positions,
                "constant_edges": [list(e) for e in self.constant_edges], "causal": self.causal}

    @classmethod
    def from_json(cls, d: dict) -> GroundTruth:
        return cls(list(d["nodes"]), [tuple(e) for e in d["edges"]], dict(d.get("positions", {})),
                   dict(d.get("causal", {})), [tuple(e) for e in d.get("constant_edges", [])])


def _support(w: torch.Tensor, dim: int, tol: float) -> torch.Tensor:
    """Which residual dims a weight touches: nonzero along ``dim`` (the d_model axis); [d_model] bool."""
    other = [d for d in range(w.dim()) if d != dim]
    return (w.abs().amax(dim=other) > tol) if other else (w.abs() > tol)


def read_write_sets(graph: CircuitGraph, tol: float = 0.0):
    """(writes [n_senders, d_model], reads [n_receivers, d_model]) as bool tensors."""
    m = graph.model
    writes = [_support(m.embed.W_E, 1, tol) | (_support(m.pos_embed.W_pos, 1, tol) if m.pos_embed is not None else False)]
    reads = []
    for block in m.blocks:
        a = block.attn
        for h in range(a.n_heads):
            reads += [_support(a.W_Q[h], 0, tol), _support(a.W_K[h], 0, tol), _support(a.W_V[h], 0, tol)]
        writes += [_support(a.W_O[h], 1, tol) for h in range(a.n_heads)]
        reads.append(_support(block.mlp.W_in, 0, tol))
        writes.append(_support(block.mlp.W_out, 1, tol))
    reads.append(_support(m.unembed.W_U, 0, tol))
    return torch.stack(writes).detach(), torch.stack(reads).detach()


def structural_edges(graph: CircuitGraph, tol: float = 0.0) -> torch.Tensor:
    """[n_senders, n_receivers] bool: s writes a dimension r reads, and s precedes r."""
    writes, reads = read_write_sets(graph, tol)
    return (writes.float() @ reads.float().T > 0) & graph.allowed()


def structural_truth(graph: CircuitGraph, tol: float = 0.0) -> GroundTruth:
    """The circuit read back from the weights (see the module docstring)."""
    edge = structural_edges(graph, tol)
    return _on_paths(graph, edge)


def _on_paths(graph: CircuitGraph, edge: torch.Tensor) -> GroundTruth:
    """Nodes and edges of ``edge`` [n_senders, n_receivers] that lie on a path to the logits."""
    S, R = graph.senders, graph.receivers
    owner = [graph.s_index.get(graph.receiver_of(r)) for r in R]  # the sender a receiver belongs to (None: logits)
    live = [False] * len(S)  # on a path to the logits
    for s in reversed(range(len(S))):
        live[s] = any(edge[s, r] and (owner[r] is None or live[owner[r]]) for r in range(len(R)))
    # Not also required: a path from the embedding. A head can carry information no edge does: a
    # SelectorWidth over positions only (n - 1 at every query) learns the length from the attention mask.
    member = live
    nodes = [S[s] for s in range(1, len(S)) if member[s]]
    edges = [(S[s], R[r]) for s in range(len(S)) for r in range(len(R))
             if edge[s, r] and member[s] and (owner[r] is None or member[owner[r]])]
    return GroundTruth(nodes, edges)


@torch.no_grad()
def ground_truth(compiled, *, n_inputs: int = 64, seed: int = 0, chunk: int = 48) -> GroundTruth:
    """The structural circuit, checked causally: ablate each node and each edge the weights connect (zero
    it, and resample it from another input of any length) on ~``n_inputs`` inputs of every length.

    A structural edge whose ablation never changes a decoded output is *inert* (mostly the ``bos``
    dimension feeding the BOS position only); it is dropped and the circuit recomputed without it.
    Nodes and edges the weights do not connect are provably silent (zero weights between them).
    ``constant_edges`` lists the true edges from the embedding that read only what every input token
    shares (the ``bos`` dimension, positions, constants): methods that resample the input cannot see
    them, since the corrupt run's embedding has the same positions."""
    graph = CircuitGraph(compiled.model)
    edge = structural_edges(graph)
    struct = _on_paths(graph, edge)
    tokens, mask = sample_tokens(compiled, n_inputs, np.random.default_rng(seed))
    clean = graph.forward(tokens, attention_mask=mask)
    real = mask[:, 1:].bool()
    want = decode_ids(compiled, clean.logits[:, 1:].float())  # [n, pos]
    n = len(tokens)
    perm = torch.from_numpy(np.random.default_rng(seed + 1).permutation(n))
    ablations = [torch.zeros_like(clean.senders),  # zero ablation, and resampling from another input
                 graph.forward(tokens[perm], attention_mask=mask[perm]).senders]

    def changes(rows: list[tuple[int, int]]) -> list[bool]:
        """Does ablating this node / edge (zeroing it, or resampling it) change some decoded output?"""
        result = []
        for i in range(0, len(rows), chunk):
            r = torch.tensor(rows[i: i + chunk])  # [c, 2]
            c = len(r)
            hit = torch.zeros(c, dtype=torch.bool)
            for corrupt in ablations:
                run = graph.forward(tokens.repeat(c, 1), attention_mask=mask.repeat(c, 1),
                                    corrupt=corrupt.repeat(c, 1, 1, 1), rows=r.repeat_interleave(n, 0))
                got = decode_ids(compiled, run.logits[:, 1:].float()).view(c, n, -1)
                hit |= ((got != want[None]) & real[None]).flatten(1).any(1)
            result += hit.tolist()
        return result

    S, R = graph.senders, graph.receivers
    checked = [(s, r) for s in range(len(S)) for r in range(len(R)) if edge[s, r]]
    live_edge = changes(checked)
    causal_edge = torch.zeros_like(edge)
    for (s, r), ch in zip(checked, live_edge):
        causal_edge[s, r] = ch
    truth = _on_paths(graph, causal_edge)
    node_change = changes([graph.node_row(x) for x in graph.nodes])
    struct_edges, true_edges, true_nodes = set(struct.edges), set(truth.edges), set(truth.nodes)
    truth.causal = {
        "inputs": n,
        "structural_nodes": len(struct.nodes), "structural_edges": len(struct.edges),
        "inert_edges": [[S[s], R[r]] for (s, r), ch in zip(checked, live_edge) if (S[s], R[r]) in struct_edges and not ch],
        "true_nodes_changing_output": sum(ch for x, ch in zip(graph.nodes, node_change) if x in true_nodes),
        "other_nodes_changing_output": sum(ch for x, ch in zip(graph.nodes, node_change) if x not in true_nodes),
        "true_edges_changing_output": sum(ch for (s, r), ch in zip(checked, live_edge) if (S[s], R[r]) in true_edges),
        "other_edges_changing_output": sum(ch for (s, r), ch in zip(checked, live_edge)
                                           if ch and (S[s], R[r]) not in true_edges),
    }
    _, reads = read_write_sets(graph)
    W_E = compiled.model.embed.W_E[FIRST_TOKEN_ID:]  # [vocab, d_model]: the only part of the embedding that varies
    token_dims = (W_E - W_E[:1]).abs().amax(0) > 0  # [d_model] dims that differ between tokens
    varying = (token_dims.float() @ reads.float().T) > 0  # [n_receivers]: reads something the tokens change
    truth.constant_edges = [(s, r) for s, r in truth.edges if s == "embed" and not varying[graph.r_index[r]]]
    for x in truth.nodes:
        out = clean.senders[:, graph.s_index[x]].abs().amax(-1)  # [n, pos]
        truth.positions[x] = [w for w, on in (("bos", out[:, 0].max() > 0), ("tokens", (out[:, 1:] * real).max() > 0)) if on]
    return truth
