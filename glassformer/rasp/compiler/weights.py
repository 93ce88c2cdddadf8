"""Stage 6: weights.  Write the heads, MLPs, embeddings and unembedding into an ordinary Transformer.

The model is ``Transformer(ModelConfig(arch="encoder", norm="none", positional="learned", act="relu",
bias=True, attn_scale=1.0, ...))``: nothing but the standard parts.  Each layer has the heads, d_head (its
widest head) and hidden units it uses (``layer_sizes``: per-layer ModelConfig sizes).  A causal
compile (``causal.py``) builds the same weights into ``arch="decoder"``.

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
from glassformer.rasp.compiler.layout import Layout, erase_spec
from glassformer.rasp.compiler.mlp import BOS, MLPSpec, cat_key, num_key
from glassformer.rasp.compiler.size import dense_params

BOS_ID, PAD_ID, FIRST_TOKEN_ID = 0, 1, 2


@dataclass
class OutputSpec:
    """How logits decode: ``classes[i]`` is the value of logit i for a categorical output (logit
    ``none_class`` is "no value", with bias 1/2), or a numerical output read from logit 0 and snapped to
    ``values`` when they are known.  When every output value is a token, the classes are the token ids
    (BOS, PAD = None, the vocabulary), so the checkpoint's tokenizer decodes the logits too."""

    numerical: bool
    classes: list
    values: list | None = None
    tolerance: float = 0.0
    none_class: int | None = None


def cleanup_spec(head: HeadSpec) -> MLPSpec | None:
    """One unit, ReLU(bos), that subtracts at BOS the default a head wrote there."""
    if not head.default:
        return None
    spec = MLPSpec(f"{head.op} (erase default at BOS)")
    spec.unit({BOS: 1.0}, 0.0, {k: -v for k, v in head.default.items()})
    return spec


def layer_mlp_specs(plan: Assignment, alloc: Allocation, layout: Layout, mlps: dict[str, MLPSpec],
                    heads: dict[str, HeadSpec]) -> list[list[MLPSpec]]:
    """Each layer's MLP parts in the order they sit in its hidden units: the element-wise nodes, one clean-up
    unit per defaulted head, then the units erasing SOps whose dimensions are reused (``layout.erase``). A head
    erased in its own layer needs no clean-up: the erasing units zero its BOS default too."""
    erased = set(layout.erase)
    layer_mlps = []
    for layer in range(alloc.n_layers):
        specs = [mlps[label] for label in alloc.mlps[layer]]
        specs += [c for c in (cleanup_spec(heads[label]) for label in alloc.heads[layer] if (layer, label) not in erased)
                  if c is not None]
        specs += [erase_spec(plan, layout, label) for l, label in layout.erase if l == layer]
        layer_mlps.append(specs)
    return layer_mlps


def planned_params(plan: Assignment, alloc: Allocation, layout: Layout, mlps: dict[str, MLPSpec],
                   heads: dict[str, HeadSpec], vocab: list, max_len: int, output: OutputSpec) -> int:
    """How many parameters ``build_model`` would build with this layout (size.py's formula)."""
    sizes = layer_sizes(alloc, heads, layer_mlp_specs(plan, alloc, layout, mlps, heads))
    per = {k: sizes.get(f"layer_{k}") or [sizes[k]] * alloc.n_layers for k in ("n_heads", "d_head", "d_mlp")}
    layers = [([e] * h, m) for h, e, m in zip(per["n_heads"], per["d_head"], per["d_mlp"])]
    d_vocab_out = 1 if output.numerical else max(1, len(output.classes))
    return dense_params(layout.d_model, FIRST_TOKEN_ID + len(vocab), max_len + 1, d_vocab_out, layers)


def layer_sizes(alloc: Allocation, heads: dict[str, HeadSpec], layer_mlps: list[list[MLPSpec]]) -> dict:
    """Each layer at its own size: as many heads as it runs, d_head = its widest head, d_mlp = the hidden
    units its MLPs use (at least 1 of each: a layer without heads keeps one zero head of width 1).
    ModelConfig fields: the uniform n_heads / d_head / d_mlp when every layer agrees, else per-layer lists."""
    per_layer = {
        "n_heads": [max(1, len(labels)) for labels in alloc.heads],
        "d_head": [max([1] + [heads[label].d_head for label in labels]) for labels in alloc.heads],
        "d_mlp": [max(1, sum(s.n_units for s in specs)) for specs in layer_mlps],
    }
    return {(name if len(set(sizes)) == 1 else f"layer_{name}"): (sizes[0] if len(set(sizes)) == 1 else sizes)
            for name, sizes in per_layer.items()}


class _Params:
    """Sparse writes into the model's parameters, gathered first and written in one go per tensor."""

    def __init__(self, model: Transformer):
        self.shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
        self.entries: dict[str, tuple[list, list]] = {}

    def add(self, name: str, index: tuple, value: float) -> None:
        idx, vals = self.entries.setdefault(name, ([], []))
        idx.append(index)
        vals.append(value)

    def array(self, name: str, dtype: np.dtype) -> np.ndarray:
        """The parameter as an array: zeros plus the gathered entries (repeated indices add up).
        Built in numpy so that no torch kernel runs per parameter (cheap on a busy CPU)."""
        arr = np.zeros(self.shapes[name], dtype=np.float64)
        if name in self.entries:
            idx, vals = self.entries[name]
            np.add.at(arr, tuple(np.asarray(col) for col in zip(*idx)), np.asarray(vals, dtype=np.float64))
        return arr.astype(dtype)


def _uninitialised(config: ModelConfig) -> Transformer:
    """A Transformer whose every parameter ``build_model`` then overwrites. Construction draws random weights;
    it does so on a forked RNG, so compiling a program leaves the caller's random state as it was."""
    with torch.random.fork_rng(devices=[]):
        return Transformer(config)


def build_model(plan: Assignment, alloc: Allocation, layout: Layout, mlps: dict[str, MLPSpec],
                heads: dict[str, HeadSpec], vocab: list, max_len: int, output: OutputSpec,
                dtype: torch.dtype = torch.float32, arch: str = "encoder") -> Transformer:
    layer_mlps = layer_mlp_specs(plan, alloc, layout, mlps, heads)
    sizes = layer_sizes(alloc, heads, layer_mlps)
    d_vocab_out = 1 if output.numerical else max(1, len(output.classes))
    config = ModelConfig(
        arch=arch, d_model=layout.d_model, n_layers=alloc.n_layers, **sizes, d_vocab=FIRST_TOKEN_ID + len(vocab),
        d_vocab_out=d_vocab_out, n_ctx=max_len + 1, norm="none", positional="learned", act="relu",
        tie_embeddings=False, bias=True, attn_scale=1.0, dropout=0.0,
    )
    model = _uninitialised(config)
    params = _Params(model)
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

    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    for name, p in model.named_parameters():
        p.data = torch.from_numpy(params.array(name, np_dtype))
    model.eval()
    return model


def _embeddings(params: _Params, plan: Assignment, layout: Layout, vocab: list, max_len: int) -> None:
    ix = layout.index
    params.add("embed.W_E", (BOS_ID, ix[BOS]), 1.0)  # W_E [d_vocab, d_model]
    for node in plan.materialized:
        op = node.op
        if not isinstance(op, Embedded) or node.label not in layout.owner:
            continue
        if op.kind == "tokens":
            for t, token in enumerate(vocab):
                key = num_key(node) if node.is_numerical else cat_key(node, token)
                params.add("embed.W_E", (FIRST_TOKEN_ID + t, ix[key]), float(token) if node.is_numerical else 1.0)
        elif op.kind == "indices":  # W_pos [n_ctx, d_model]; position 0 is BOS
            for p in range(max_len):
                key = num_key(node) if node.is_numerical else cat_key(node, p)
                params.add("pos_embed.W_pos", (p + 1, ix[key]), float(p) if node.is_numerical else 1.0)
        else:  # a constant, at every real token
            key = num_key(node) if node.is_numerical else cat_key(node, op.value)
            for t in range(len(vocab)):
                params.add("embed.W_E", (FIRST_TOKEN_ID + t, ix[key]), float(op.value) if node.is_numerical else 1.0)


def _head(params: _Params, prefix: str, h: int, spec: HeadSpec, ix: dict) -> None:
    # W_Q, W_K, W_V [n_heads, d_model, d_head]; b_Q, b_K [n_heads, d_head]; W_O [n_heads, d_head, d_model]
    for j, (wq, bq, wk, bk) in enumerate(spec.qk):
        for key, w in wq.items():
            params.add(f"{prefix}.W_Q", (h, ix[key], j), spec.beta * w)
        if bq:
            params.add(f"{prefix}.b_Q", (h, j), spec.beta * bq)
        for key, w in wk.items():
            params.add(f"{prefix}.W_K", (h, ix[key], j), w)
        if bk:
            params.add(f"{prefix}.b_K", (h, j), bk)
    for j, (wv, wo) in enumerate(spec.ov):
        for key, w in wv.items():
            params.add(f"{prefix}.W_V", (h, ix[key], j), w)
        for key, w in wo.items():
            params.add(f"{prefix}.W_O", (h, j, ix[key]), w)


def _mlp(params: _Params, prefix: str, offset: int, spec: MLPSpec, ix: dict) -> None:
    # W_in [d_model, d_mlp], b_in [d_mlp], W_out [d_mlp, d_model]
    for key, u, w in spec.w_in:
        params.add(f"{prefix}.W_in", (ix[key], offset + u), w)
    for u, b in enumerate(spec.b_in):
        if b:
            params.add(f"{prefix}.b_in", (offset + u,), b)
    for u, key, w in spec.w_out:
        params.add(f"{prefix}.W_out", (offset + u, ix[key]), w)


def _unembed(params: _Params, plan: Assignment, ix: dict, output: OutputSpec) -> None:
    # W_U [d_model, d_vocab_out], b_U [d_vocab_out]
    node = plan.graph.output
    if output.numerical:
        params.add("unembed.W_U", (ix[num_key(node)], 0), 1.0)
        return
    for c, y in enumerate(output.classes):
        if y is not None and cat_key(node, y) in ix:  # token classes the output never takes stay at 0
            params.add("unembed.W_U", (ix[cat_key(node, y)], c), 1.0)
    if output.none_class is not None:
        params.add("unembed.b_U", (output.none_class,), 0.5)
