"""A model that computes two compiled programs side by side and outputs only the first.

The second program is a *distractor*: real heads and MLPs doing real work that the output never reads.
Its weights go block-diagonally beside the first's (norm-free models add up exactly):

    d_model = d_A + d_B     heads in layer l = h_A(l) + h_B(l)     d_mlp(l) = m_A(l) + m_B(l)     layers = max(L_A, L_B)
    W_E = [W_E^A  W_E^B]    W_pos = [W_pos^A  W_pos^B]      W_U = [W_U^A ; 0]      (both use the same token ids)

No weight joins the two halves, so A's output is unchanged (checked) and every component of B lies off
the circuit -- which makes a circuit method's precision mean something: an empty model slot is easy
to rule out, a distractor head that attends sharply and writes a value is not.
"""

from __future__ import annotations

import dataclasses

import torch

from glassformer.circuits.errors import CircuitsError
from glassformer.model import Transformer
from glassformer.rasp.compiler.compiled import Block, CompiledModel


def merge(main: CompiledModel, distractor: CompiledModel) -> CompiledModel:
    """``main`` with ``distractor`` computed beside it (same vocabulary and max_len); see the module docstring."""
    if list(main.vocab) != list(distractor.vocab) or main.max_len != distractor.max_len:
        raise CircuitsError("a distractor must be compiled with the main program's vocabulary and max_len")
    A, B = main.model, distractor.model
    ca, cb = A.config, B.config
    dtype = torch.float64 if torch.float64 in (A.embed.W_E.dtype, B.embed.W_E.dtype) else torch.float32
    dA, dB = ca.d_model, cb.d_model
    n_layers = max(ca.n_layers, cb.n_layers)
    sizes = [[_sizes(src, L) for src in (A, B)] for L in range(n_layers)]  # per layer: (heads, d_head, d_mlp) of A, B
    config = dataclasses.replace(
        ca, d_model=dA + dB, n_layers=n_layers, n_kv_heads=None, layer_n_heads=[a[0] + b[0] for a, b in sizes],
        layer_d_head=[max(a[1], b[1]) for a, b in sizes], layer_d_mlp=[a[2] + b[2] for a, b in sizes])
    with torch.random.fork_rng(devices=[]):
        model = Transformer(config).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E[:, :dA] = A.embed.W_E
        model.embed.W_E[:, dA:] = B.embed.W_E
        model.pos_embed.W_pos[:, :dA] = A.pos_embed.W_pos
        model.pos_embed.W_pos[:, dA:] = B.pos_embed.W_pos
        model.unembed.W_U[:dA] = A.unembed.W_U
        model.unembed.b_U.copy_(A.unembed.b_U)
        for i, (src, d0) in enumerate(((A, 0), (B, dA))):
            sd = src.config.d_model
            for L, block in enumerate(src.blocks):
                (sh, e, sm), h0, m0 = sizes[L][i], sizes[L][0][0] * i, sizes[L][0][2] * i  # B's heads/units after A's
                a, t = block.attn, model.blocks[L].attn
                for name in ("W_Q", "W_K", "W_V"):
                    getattr(t, name)[h0: h0 + sh, d0: d0 + sd, :e] = getattr(a, name)
                for name in ("b_Q", "b_K", "b_V"):
                    getattr(t, name)[h0: h0 + sh, :e] = getattr(a, name)
                t.W_O[h0: h0 + sh, :e, d0: d0 + sd] = a.W_O
                t.b_O[d0: d0 + sd] = a.b_O
                mlp, tm = block.mlp, model.blocks[L].mlp
                tm.W_in[d0: d0 + sd, m0: m0 + sm] = mlp.W_in
                tm.b_in[m0: m0 + sm] = mlp.b_in
                tm.W_out[m0: m0 + sm, d0: d0 + sd] = mlp.W_out
                tm.b_out[d0: d0 + sd] = mlp.b_out
    model.eval()
    labels = list(main.residual_labels) + [f"distractor:{x}" for x in distractor.residual_labels]
    blocks = list(main.blocks) + [Block(b.layer, b.kind, f"distractor:{b.node}", b.detail, b.size) for b in distractor.blocks]
    name = f"{main.program_name}+{distractor.program_name}"
    merged = CompiledModel(model, list(main.vocab), main.max_len, main.output, labels, blocks, main.program, name)
    return merged


def _sizes(model: Transformer, layer: int) -> tuple[int, int, int]:
    """(heads, d_head, d_mlp) of one layer (layers may differ: compiled models size each to its use); 0s past the end."""
    if layer >= len(model.blocks):
        return 0, 0, 0
    block = model.blocks[layer]
    return block.attn.n_heads, block.attn.d_head, block.mlp.W_in.shape[1]
