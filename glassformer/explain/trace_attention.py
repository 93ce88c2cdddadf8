"""The explain trace's attention steps: each head's queries, keys and values, its scores, its pattern and
its weighted sum, then the heads combined by W_O.

Nothing here knows the variants by name. The attention module says what it is (``glassformer/model``):
``scores_tex`` and ``pattern_tex`` give its equations (full, sliding, sparse, linear or Linformer
attention, with the positional scheme's bias term), ``softmax_pattern`` whether the pattern is a softmax,
``key_axis`` what the pattern's columns are (positions, or Linformer's projected slots), and its
sub-modules (``q_norm``, ``rotary``, ``score_bias``) the extra steps; each shows its own ``describe()``.
Quantities without a hook (the score bias, Linformer's projected keys) are computed by the module's
own functions from cached activations and labelled "derived" with the expression that made them.
"""

from __future__ import annotations

import numpy as np
import torch

from glassformer.explain.document import Shown, Step, dims, elided, fmt
from glassformer.model.describe import describe


def attention_steps(b, a: str, attn, cross: bool) -> list:
    """The steps of attention module ``attn``, hook prefix ``a`` ("blocks.0.attn"), for builder ``b``."""
    p = a.split("blocks.")[0]
    q_rows = b.labels[p]
    n_keys = b.cache[f"{a}.k"].shape[1]
    k_rows = b.labels["encoder."] if cross else b.key_labels(p, n_keys)
    slots = getattr(attn, "key_axis", "positions") != "positions"
    s_cols = [f"{s} slot" for s in range(b.cache[f"{a}.pattern"].shape[-1])] if slots else k_rows
    nq, nk, e, d = len(q_rows), len(k_rows), attn.d_head, b.d_model
    group = attn.n_heads // attn.n_kv_heads
    x, y = "x", ("m" if cross else "x")  # queries read x; keys/values read x, or the memory m
    device = b.cache[f"{a}.k"].device
    q_pos = torch.arange(nk - nq, nk, device=device)  # a Transformer-XL memory sits before the queries (offsets are what count)
    k_pos = torch.arange(nk, device=device)
    steps = []
    if cross:
        steps.append(Step("Cross-attention reads the encoder", text="Queries come from the decoder's stream x; keys and values from the encoder output m (the memory), one row per source token."))
    elif nk > nq:
        steps.append(b.memory_step(a, nk - nq))
    for h in range(attn.n_heads):
        kv = h // group
        head = f"head {h}"
        qkv = []
        for w, rows_, src_ in (("Q", q_rows, x), ("K", k_rows, y), ("V", k_rows, y)):
            hidx = h if w == "Q" else kv
            qkv.append(b.param(f"W_{w}[{hidx}]", f"{a}.W_{w}", (hidx,), rows=b.resid_labels))
            qkv[-1].break_before = True  # one row of tables per role: W, b, result
            if f"{a}.b_{w}" in b.params:
                qkv.append(b.param(f"b_{w}[{hidx}]", f"{a}.b_{w}", (hidx,)))
            qkv.append(b.hook(f"{w.lower()} = {src_} W_{w} + b_{w}, {head}", f"{a}.{w.lower()}", (0, slice(None), hidx), rows=rows_))
        text = "Three linear maps of the input, one per role." + (f" Query heads {kv * group}..{kv * group + group - 1} share key/value head {kv}." if group > 1 else "")
        steps.append(Step(
            f"{_title(a)}, {head}: queries, keys, values",
            [rf"q = {x} W_Q^{{{h}}} + b_Q^{{{h}}}, \quad k = {y} W_K^{{{kv}}} + b_K^{{{kv}}}, \quad v = {y} W_V^{{{kv}}} + b_V^{{{kv}}}"],
            [f"q: {dims(pos=nq, d_model=d)} @ {dims(d_model=d, d_head=e)} -> {dims(pos=nq, d_head=e)}",
             f"k, v: {dims(pos=nk, d_model=d)} @ {dims(d_model=d, d_head=e)} -> {dims(pos=nk, d_head=e)}"],
            text, qkv,
        ))
        if attn.q_norm is not None:
            steps.append(_qk_norm_step(b, a, attn, h, kv, q_rows, k_rows))
        if attn.rotary is not None:
            rope = describe(attn.rotary)
            steps.append(Step(f"{_title(a)}, {head}: {rope.title}", list(rope.equations), [f"{dims(pos=nq, d_head=e)} -> {dims(pos=nq, d_head=e)}"],
                              rope.text + " (q and k above are shown before the rotation; the scores below use the rotated ones.)"))
        values = "v"
        if hasattr(attn, "project_keys_values"):  # Linformer: keys and values mixed along positions into slots
            steps.append(_projection_step(b, a, attn, h, kv, k_rows, s_cols, k_pos))
            values = "v'"
        if attn.score_bias is not None:
            bias_desc = describe(attn.score_bias)
            bias = attn.score_bias(q_pos, k_pos)[h].detach().double().cpu().numpy()  # [q_pos, k_pos]
            steps.append(Step(f"{_title(a)}, {head}: {bias_desc.title}", list(bias_desc.equations), [dims(q_pos=nq, k_pos=nk)], bias_desc.text,
                              [Shown(f"bias, {head}", "derived", f"{a}.score_bias", f"[{h}]", bias, q_rows, k_rows)]))
        scores_shape = f"{dims(q_pos=nq, d_head=e)} @ {dims(d_head=e, k_pos=len(s_cols))} -> {dims(q_pos=nq, k_pos=len(s_cols))}"
        steps.append(Step(
            f"{_title(a)}, {head}: scores", [attn.scores_tex(h)], [scores_shape],
            f"scale = {attn.scale:.4g}." if attn.softmax_pattern else "",
            [b.hook(f"scores, {head} (query rows, key columns)", f"{a}.scores", (0, h), rows=q_rows, cols=s_cols)],
        ))
        lines = []
        if attn.softmax_pattern:
            lines = _softmax_lines(b.cache[f"{a}.scores"][0, h].double().cpu().numpy(), q_rows, b.max_rows, b.max_cols)
        steps.append(Step(
            f"{_title(a)}, {head}: " + ("softmax, row by row" if attn.softmax_pattern else "pattern"), [attn.pattern_tex()],
            [f"{dims(q_pos=nq, k_pos=len(s_cols))} -> {dims(q_pos=nq, k_pos=len(s_cols))}, each row sums to 1"],
            attn.pattern_text(), [b.hook(f"pattern, {head}", f"{a}.pattern", (0, h), rows=q_rows, cols=s_cols, heat=True)], lines,
        ))
        steps.append(Step(
            f"{_title(a)}, {head}: weighted sum of values", [rf"z = \mathrm{{pattern}}\; {values}"],
            [f"{dims(q_pos=nq, k_pos=len(s_cols))} @ {dims(k_pos=len(s_cols), d_head=e)} -> {dims(q_pos=nq, d_head=e)}"],
            tensors=[b.hook(f"z, {head}", f"{a}.z", (0, slice(None), h), rows=q_rows)],
        ))
    out = a.rsplit(".", 1)[0] + (".cross_attn_out" if cross else ".attn_out")
    tensors = [b.param(f"W_O[{h}]", f"{a}.W_O", (h,), cols=b.resid_labels) for h in range(attn.n_heads)]
    if f"{a}.b_O" in b.params:
        tensors.append(b.param("b_O", f"{a}.b_O", cols=b.resid_labels))
    tensors.append(b.sublayer_output(out.rsplit(".", 1)[-1], out, q_rows))
    steps.append(Step(
        f"{_title(a)}: heads combined by W_O",
        [r"\mathrm{out} = \sum_{h} z_h W_O^{h} + b_O \quad (= \mathrm{Concat}(z_0, \ldots) W_O)"],
        [f"per head: {dims(pos=nq, d_head=e)} @ {dims(d_head=e, d_model=d)} -> {dims(pos=nq, d_model=d)}, summed over {attn.n_heads} heads"],
        "Each head writes back into the residual stream through its own slice of W_O.", tensors,
    ))
    return steps


def _qk_norm_step(b, a, attn, h, kv, q_rows, k_rows) -> Step:
    norm = describe(attn.q_norm)
    normed = []
    for w, rows_, hidx in (("q", q_rows, h), ("k", k_rows, kv)):
        normed.append(b.param(f"{w}_norm gain", f"{a}.{w}_norm.w"))
        if f"{a}.{w}_norm.b" in b.params:
            normed.append(b.param(f"{w}_norm bias", f"{a}.{w}_norm.b"))
        if b.has(f"{a}.{w}_norm.scale"):
            normed.append(b.hook(f"scale of {w}", f"{a}.{w}_norm.scale", (0, slice(None), hidx), rows=rows_))
        normed.append(b.hook(f"Norm({w}), head {hidx}", f"{a}.{w}_norm", (0, slice(None), hidx), rows=rows_))
    return Step(f"{_title(a)}, head {h}: QK-norm ({norm.title})",
                [r"q \leftarrow \mathrm{Norm}(q), \quad k \leftarrow \mathrm{Norm}(k)", *norm.equations],
                [f"{dims(pos=len(q_rows), d_head=attn.d_head)} -> {dims(pos=len(q_rows), d_head=attn.d_head)}, over d_head"],
                "The dot products below use the normalised q and k. " + norm.text, normed)


def _projection_step(b, a, attn, h, kv, k_rows, s_cols, k_pos) -> Step:
    """Linformer: k' = E k, v' = F v, computed by the module from the cached (normed, rotated) k and v."""
    k = b.cache[f"{a}.k_norm"] if b.has(f"{a}.k_norm") else b.cache[f"{a}.k"]  # [1, pos, kv_heads, d_head]
    if attn.rotary is not None:
        k = attn.rotary(k, k_pos)
    with torch.no_grad():
        k_proj, v_proj = attn.project_keys_values(k, b.cache[f"{a}.v"])  # [1, slots, kv_heads, d_head]
    n, slots = len(k_rows), len(s_cols)
    tensors = [b.param("E (keys)", f"{a}.E", rows=s_cols), b.param("F (values)", f"{a}.F", rows=s_cols),
               Shown(f"k' = E k, kv head {kv}", "derived", f"{a}.E @ k", f"[0, :, {kv}]", k_proj[0, :, kv].double().cpu().numpy(), s_cols),
               Shown(f"v' = F v, kv head {kv}", "derived", f"{a}.F @ v", f"[0, :, {kv}]", v_proj[0, :, kv].double().cpu().numpy(), s_cols)]
    return Step(f"{_title(a)}, head {h}: keys and values projected to {slots} slots", [attn.projection_tex()],
                [f"{dims(slots=slots, pos=n)} @ {dims(pos=n, d_head=attn.d_head)} -> {dims(slots=slots, d_head=attn.d_head)}"],
                "Each slot is a learned mix of all positions (E and F are shared by the heads; only their first pos columns are used).",
                tensors)


def _title(a: str) -> str:
    """"blocks.0.attn" -> "Attention (layer 0)"."""
    parts = a.split(".")
    kind = "Cross-attention" if parts[-1] == "cross_attn" else "Attention"
    return f"{kind} (layer {parts[-2]})"


def _softmax_lines(scores: np.ndarray, rows: list[str], max_rows: int, max_cols: int) -> list[str]:
    lines = []
    cols = elided(scores.shape[1], max_cols)

    def vec(v):
        return "[" + ", ".join("…" if j is None else fmt(v[j]) for j in cols) + "]"

    for i in elided(scores.shape[0], max_rows):
        if i is None:
            lines.append("…")
            continue
        s = scores[i].astype(np.float64)
        top = s.max()
        e = np.exp(s - top) if np.isfinite(top) else np.zeros_like(s)
        total = e.sum()
        lines.append(f"row {rows[i]}: s = {vec(s)}; max = {fmt(top)}; exp(s − max) = {vec(e)}; sum = {fmt(total)}; "
                     f"pattern = {vec(e / total if total else e)}")
    return lines
