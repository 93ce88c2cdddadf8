"""How big a compiled model is, next to what it must store: dense and non-zero parameters, and the floors.

A compiled model is a standard Transformer, so each weight matrix is dense even where the program needs a
few entries: a head's W_Q reads the handful of residual dimensions its clause compares, out of d_model;
a lookup-table hidden unit reads the one-hots of its inputs.  ``size_report`` counts the parameters of
the model as built and of three smaller standard transformers that would compute the same program:

    params            the model as built: each layer its own n_heads, d_head (its widest head), d_mlp
    uniform           every layer as wide as the widest (one n_heads / d_head / d_mlp for all layers)
    per_head          each head its own d_head (the attention's floor: a standard layer has one d_head)
    reuse             d_model = the most residual dimensions alive at once: each SOp's dimensions freed after
                      their last reader and reused (erasing them is taken as free: a lower bound)
    floor             per_head and reuse together: the smallest dense standard transformer for this schedule

Parameter count of the compiled config (no norms, biases, learned positions, untied unembedding), with
d = d_model, per layer h heads of width e and m hidden units:

    V d + n_ctx d  +  sum_layers [ 4 h d e + 3 h e + d  +  2 d m + m + d ]  +  d V_out + V_out
"""

from __future__ import annotations

import math


def dense_params(d_model: int, d_vocab: int, n_ctx: int, d_vocab_out: int, layers: list[tuple[list[int], int]]) -> int:
    """Parameters of a compiled-shape model; ``layers``: per layer (each head's d_head, d_mlp)."""
    d = d_model
    total = d_vocab * d + n_ctx * d + d * d_vocab_out + d_vocab_out
    for widths, d_mlp in layers:
        total += sum(4 * d * e + 3 * e for e in widths) + d  # W_Q, W_K, W_V, W_O, b_Q, b_K, b_V; b_O
        total += 2 * d * d_mlp + d_mlp + d  # W_in, W_out, b_in; b_out
    return total


def live_dimensions(compiled) -> int:
    """The most residual dimensions alive at once.  An SOp's dimensions are alive from the sublayer that
    writes it (the embedding: before layer 0) until the last sublayer that reads it (the output: to the end);
    sublayer 2l is layer l's attention, 2l + 1 its MLP.  ``bos`` is alive throughout."""
    written: dict[str, int] = {}
    last_read: dict[str, float] = {compiled.output_sop: math.inf, "bos": math.inf}
    for b in compiled.blocks:
        s = 2 * b.layer + (b.kind == "mlp")
        if b.node not in written or s < written[b.node]:  # a head's BOS clean-up unit also names the head's SOp
            written[b.node] = s
        for r in b.reads:
            last_read[r] = max(last_read.get(r, -math.inf), s)
    width = {label: stop - start for label, (start, stop) in compiled.residual_dims.items()}
    n_sublayers = 2 * compiled.model.config.n_layers
    most = 0
    for t in range(-1, n_sublayers):  # the residual stream between sublayer t and t + 1 (-1: after the embedding)
        alive = sum(w for label, w in width.items() if written.get(label, -1) <= t < last_read.get(label, -math.inf))
        most = max(most, alive)
    return most


def size_report(compiled) -> dict:
    """Dense and non-zero parameters of ``compiled`` and the floors in the module docstring."""
    model, c = compiled.model, compiled.model.config
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    heads = [[b.size for b in compiled.blocks if b.kind == "attention" and b.layer == l] for l in range(c.n_layers)]
    built = [([blk.attn.d_head] * blk.attn.n_heads, blk.mlp.W_in.shape[1]) for blk in model.blocks]
    own = [(widths or [1], d_mlp) for widths, (_, d_mlp) in zip(heads, built)]  # a layer without heads keeps one
    uniform = [([c.d_head] * c.n_heads, c.d_mlp)] * c.n_layers
    live = live_dimensions(compiled)
    shape = dict(d_vocab=c.d_vocab, n_ctx=c.n_ctx, d_vocab_out=c.d_vocab_out)
    sizes = {
        "params": model.num_params(),
        "uniform": dense_params(c.d_model, layers=uniform, **shape),
        "per_head": dense_params(c.d_model, layers=own, **shape),
        "reuse": dense_params(live, layers=built, **shape),
        "floor": dense_params(live, layers=own, **shape),
    }
    assert sizes["params"] == dense_params(c.d_model, layers=built, **shape), "the size formula no longer fits the model"
    return {**sizes, "nonzero": nonzero, "d_model": c.d_model, "live_d_model": live,
            **{f"{k}_over_nonzero": v / max(nonzero, 1) for k, v in sizes.items()}}
