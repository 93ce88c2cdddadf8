"""Stage 6: weights.  Write the heads, MLPs, embeddings and unembedding into an ordinary Transformer.

The model is ``Transformer(ModelConfig(arch="encoder", norm="none", positional="learned", act="relu",
bias=True, attn_scale=1.0, ...))``: nothing but the standard parts.  Sizes are the largest any layer
needs (n_heads, d_head, d_mlp); heads and hidden units a layer does not use stay zero.

    token ids   0 = BOS, 1 = PAD, 2.. = the vocabulary
    W_E[BOS]    the ``bos`` dimension;  W_E[token t] its ``tokens=t`` dimension and every constant
    W_pos[p]    ``indices=p-1`` for p >= 1 (BOS sits at position 0)
    W_Q, W_K    the clause factors, W_Q times the head's sharpness beta;  W_V, W_O copy values
    W_in, W_out the MLP units (see ``mlp.py``), plus one unit per defaulted head that erases the
                default it wrote at BOS
    W_U, b_U    output value -> logit; for a categorical output that may be None, a "None" class
                with bias 1/2 that wins when no value dimension is set
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from glassformer.model import ModelConfig, Transformer
from glassformer.rasp.compiler.allocate import Allocation
from glassformer.rasp.compiler.assign import Assignment
from glassformer.rasp.compiler.attention import HeadSpec
from glassformer.rasp.compiler.graph import Embedded
from glassformer.rasp.compiler.layout import Layout
from glassformer.rasp.compiler.mlp import BOS, MLPSpec, cat_key, num_key

BOS_ID, PAD_ID, FIRST_TOKEN_ID = 0, 1, 2


@dataclass
class OutputSpec:
    """How logits decode: ``classes`` for a categorical output (None among them if it can occur), or
    a numerical output read from logit 0 and snapped to ``values`` when they are known."""

    numerical: bool
    classes: list
    values: list | None = None
    tolerance: float = 0.0


def cleanup_spec(head: HeadSpec) -> MLPSpec | None:
    """One unit, ReLU(bos), that subtracts at BOS the default a head wrote there."""
    if not head.default:
        return None
    spec = MLPSpec(f"{head.op} (erase default at BOS)")
    spec.unit({BOS: 1.0}, 0.0, {k: -v for k, v in head.default.items()})
    return spec


def build_model(plan: Assignment, alloc: Allocation, layout: Layout, mlps: dict[str, MLPSpec],
                heads: dict[str, HeadSpec], vocab: list, max_len: int, output: OutputSpec) -> Transformer:
    layer_mlps: list[list[MLPSpec]] = []
    for layer in range(alloc.n_layers):
        specs = [mlps[label] for label in alloc.mlps[layer]]
        specs += [c for c in (cleanup_spec(heads[label]) for label in alloc.heads[layer]) if c is not None]
        layer_mlps.append(specs)
    n_heads = max(1, max(len(h) for h in alloc.heads))
    d_head = max([1] + [heads[label].d_head for layer in alloc.heads for label in layer])
    d_mlp = max([1] + [sum(s.n_units for s in specs) for specs in layer_mlps])
    config = ModelConfig(
        arch="encoder", d_model=layout.d_model, n_layers=alloc.n_layers, n_heads=n_heads, d_head=d_head,
        d_mlp=d_mlp, d_vocab=FIRST_TOKEN_ID + len(vocab), d_vocab_out=max(1, len(output.classes)) if not output.numerical else 1,
        n_ctx=max_len + 1, norm="none", positional="learned", act="relu", tie_embeddings=False, bias=True,
        attn_scale=1.0, dropout=0.0,
    )
    params = {name: np.zeros(tuple(p.shape)) for name, p in Transformer(config).named_parameters()}
    ix = layout.index

    _embeddings(params, plan, layout, vocab, max_len)
    for layer in range(alloc.n_layers):
        for h, label in enumerate(alloc.heads[layer]):
            _head(params, f"blocks.{layer}.attn", h, heads[label], ix)
        unit = 0
        for spec in layer_mlps[layer]:
            _mlp(params, f"blocks.{layer}.mlp", unit, spec, ix)
            unit += spec.n_units
    _unembed(params, plan, ix, output)

    model = Transformer(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(params[name]).to(p.dtype))
    model.eval()
    return model


def _embeddings(params, plan: Assignment, layout: Layout, vocab: list, max_len: int) -> None:
    W_E, W_pos, ix = params["embed.W_E"], params["pos_embed.W_pos"], layout.index
    W_E[BOS_ID, ix[BOS]] = 1.0
    for node in plan.materialized:
        op = node.op
        if not isinstance(op, Embedded) or node.label not in layout.owner:
            continue
        if op.kind == "tokens":
            for t, token in enumerate(vocab):
                key = num_key(node) if node.is_numerical else cat_key(node, token)
                W_E[FIRST_TOKEN_ID + t, ix[key]] = float(token) if node.is_numerical else 1.0
        elif op.kind == "indices":
            for p in range(max_len):
                key = num_key(node) if node.is_numerical else cat_key(node, p)
                W_pos[p + 1, ix[key]] = float(p) if node.is_numerical else 1.0
        else:  # a constant, at every real token
            key = num_key(node) if node.is_numerical else cat_key(node, op.value)
            W_E[FIRST_TOKEN_ID:, ix[key]] = float(op.value) if node.is_numerical else 1.0


def _head(params, prefix: str, h: int, spec: HeadSpec, ix: dict) -> None:
    W_Q, b_Q = params[f"{prefix}.W_Q"][h], params[f"{prefix}.b_Q"][h]  # [d_model, d_head], [d_head]
    W_K, b_K = params[f"{prefix}.W_K"][h], params[f"{prefix}.b_K"][h]
    W_V, W_O = params[f"{prefix}.W_V"][h], params[f"{prefix}.W_O"][h]  # [d_model, d_head], [d_head, d_model]
    for j, (wq, bq, wk, bk) in enumerate(spec.qk):
        for key, w in wq.items():
            W_Q[ix[key], j] += spec.beta * w
        b_Q[j] += spec.beta * bq
        for key, w in wk.items():
            W_K[ix[key], j] += w
        b_K[j] += bk
    for j, (wv, wo) in enumerate(spec.ov):
        for key, w in wv.items():
            W_V[ix[key], j] += w
        for key, w in wo.items():
            W_O[j, ix[key]] += w


def _mlp(params, prefix: str, offset: int, spec: MLPSpec, ix: dict) -> None:
    W_in, b_in, W_out = params[f"{prefix}.W_in"], params[f"{prefix}.b_in"], params[f"{prefix}.W_out"]
    for key, u, w in spec.w_in:
        W_in[ix[key], offset + u] += w
    b_in[offset:offset + spec.n_units] = spec.b_in
    for u, key, w in spec.w_out:
        W_out[offset + u, ix[key]] += w


def _unembed(params, plan: Assignment, ix: dict, output: OutputSpec) -> None:
    W_U, b_U = params["unembed.W_U"], params["unembed.b_U"]  # [d_model, d_vocab_out], [d_vocab_out]
    node = plan.graph.output
    if output.numerical:
        W_U[ix[num_key(node)], 0] = 1.0
        return
    for c, y in enumerate(output.classes):
        if y is None:
            b_U[c] = 0.5
        else:
            W_U[ix[cat_key(node, y)], c] = 1.0
