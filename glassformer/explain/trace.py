"""`glassformer explain`: one forward pass written out equation by equation, with the model's own numbers.

:func:`trace` runs the model once with every hook point cached (``run_with_cache``) and builds a
:class:`Trace`: sections (embedding, each block, the unembedding) made of steps, each with its
equation(s) in LaTeX, the shape of every operand (``[pos=3, d_model=4] @ [d_model=4, d_head=2] ->
[pos=3, d_head=2]``), and the tensors involved. Every number shown is a hook activation or a parameter
of the model (or, for the few things with no hook, such as the residual sum a Post-LN norm reads, a sum
or softmax of cached activations named in the caption), so the document cannot drift from the code:
``tests/explain/test_trace.py`` reads the numbers back and compares them with ``run_with_cache``.

Rendering lives in :mod:`glassformer.explain.render` (Markdown and self-contained HTML).
"""

from __future__ import annotations

import numpy as np
import torch

from glassformer.errors import InputError
from glassformer.explain.document import Section, Shown, Step, Trace, dims, elided, fmt, token_text


GATED = ("swiglu", "geglu")
ACT_TEX = {
    "gelu": r"\mathrm{GELU}(a) = a\,\Phi(a)",
    "gelu_tanh": r"\mathrm{GELU}(a) \approx \frac{a}{2}(1 + \tanh(\sqrt{2/\pi}(a + 0.044715 a^3)))",
    "relu": r"\mathrm{ReLU}(a) = \max(0, a)",
    "relu2": r"\mathrm{ReLU}^2(a) = \max(0, a)^2",
    "swiglu": r"\mathrm{SiLU}(a) = a\,\sigma(a)",
    "geglu": r"\mathrm{GELU}(a) = a\,\Phi(a)",
}


class _Builder:
    """Turns one cached forward pass into sections. ``p`` = stack prefix ("" or "encoder.")."""

    def __init__(self, model, cache, tokens, src, tokenizer, max_rows: int, max_cols: int):
        self.model, self.cfg, self.cache, self.tokenizer = model, model.config, cache, tokenizer
        self.max_rows, self.max_cols = max_rows, max_cols
        self.params = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        self.labels = {"": [f"{i} {token_text(tokenizer, t)}" for i, t in enumerate(tokens)]}
        if src is not None:
            self.labels["encoder."] = [f"{i} {token_text(tokenizer, t)}" for i, t in enumerate(src)]

    # -- tensors -----------------------------------------------------------------------------------------

    def hook(self, caption, name, index=(0,), rows=None, cols=None, heat=False) -> Shown:
        value = self.cache[name].detach().cpu().numpy()[index]
        return Shown(caption, "hook", name, _index_str(index), value, rows, cols, heat)

    def param(self, caption, name, index=(), rows=None, cols=None) -> Shown:
        value = self.params[name][index] if index else self.params[name]
        return Shown(caption, "param", name, _index_str(index), value, rows, cols)

    def has(self, name: str) -> bool:
        return name in self.cache

    # -- sections ----------------------------------------------------------------------------------------

    def embedding(self, p: str) -> Section:
        cfg, rows = self.cfg, self.labels[p]
        n = len(rows)
        section = Section("Encoder embedding" if p else "Embedding", "Token ids become vectors in the residual stream.")
        vocab_rows = [f"{i} {token_text(self.tokenizer, i)}" for i in range(cfg.d_vocab)]
        section.steps.append(Step(
            "Token embedding",
            [r"\mathrm{embed}_i = W_E[t_i]"],
            [f"W_E {dims(d_vocab=cfg.d_vocab, d_model=cfg.d_model)}, rows t -> {dims(pos=n, d_model=cfg.d_model)}"],
            "Each token id picks one row of the embedding matrix.",
            [self.param("embedding matrix W_E", f"{p}embed.W_E", rows=vocab_rows), self.hook("embed", f"{p}embed", rows=rows)],
        ))
        positional = cfg.positional
        if positional in ("learned", "sinusoidal"):
            eq = (
                [r"\mathrm{pos}_i = W_{\mathrm{pos}}[i]"]
                if positional == "learned"
                else [r"PE_{i, 2k} = \sin(i\,\omega_k), \quad PE_{i, 2k+1} = \cos(i\,\omega_k), \quad \omega_k = 10000^{-2k/d_{\mathrm{model}}}"]
            )
            text = "One learned vector per position." if positional == "learned" else "Fixed sinusoids (nothing learned), defined for any position."
            section.steps.append(Step(
                f"Positional embedding ({positional})", eq, [dims(pos=n, d_model=cfg.d_model)], text,
                [self.hook("pos_embed", f"{p}pos_embed", index=(), rows=rows)],
            ))
            resid_eq = r"\mathrm{resid}_0 = \mathrm{embed} + \mathrm{pos}"
        else:
            section.steps.append(Step(f"Positions ({positional})", text={
                "rope": "RoPE adds nothing here: it rotates queries and keys inside every attention layer.",
                "alibi": "ALiBi adds nothing here: it adds -m_h |i - j| to every head's attention scores.",
                "none": "No positional information at all: only the causal mask (if any) can reveal order.",
            }[positional]))
            resid_eq = r"\mathrm{resid}_0 = \mathrm{embed}"
        if self.has(f"{p}ln_embed"):
            section.steps.append(self.norm_step("Embedding norm", f"{p}ln_embed", None, rows))
        first = f"{p}blocks.0.resid_pre"
        section.steps.append(Step("The residual stream begins", [resid_eq], [dims(pos=n, d_model=cfg.d_model)],
                                  tensors=[self.hook("resid_0", first, rows=rows)]))
        return section

    def norm_step(self, title: str, name: str, shown_input: Shown | None, rows) -> Step:
        cfg = self.cfg
        if cfg.norm == "rmsnorm":
            eqs = [r"\mathrm{rms} = \sqrt{\frac{1}{d_{\mathrm{model}}} \sum_j x_j^2 + \epsilon}", r"\mathrm{RMSNorm}(x) = \frac{x}{\mathrm{rms}} \odot w"]
        else:
            eqs = [
                r"\mu = \frac{1}{d_{\mathrm{model}}} \sum_j x_j, \quad \sigma = \sqrt{\frac{1}{d_{\mathrm{model}}} \sum_j (x_j - \mu)^2 + \epsilon}",
                r"\mathrm{LN}(x) = \frac{x - \mu}{\sigma} \odot w + b",
            ]
        tensors = [shown_input] if shown_input is not None else []
        if self.has(f"{name}.scale"):
            tensors.append(self.hook("sigma (one per position)" if cfg.norm == "layernorm" else "rms (one per position)", f"{name}.scale", rows=rows))
        tensors.append(self.param("gain w", f"{name}.w"))
        if f"{name}.b" in self.params:
            tensors.append(self.param("bias b", f"{name}.b"))
        tensors.append(self.hook("normalised output", name, rows=rows))
        return Step(title, eqs, [f"{dims(pos=len(rows), d_model=cfg.d_model)} -> {dims(pos=len(rows), d_model=cfg.d_model)}, per position"],
                    f"ε = {cfg.norm_eps:g}; the statistics are taken over the d_model numbers of each position separately.", tensors)

    def block(self, p: str, i: int, causal: bool) -> Section:
        cfg = self.cfg
        b = f"{p}blocks.{i}"
        where = "before each sublayer (Pre-LN)" if cfg.norm_position == "pre" else "after each residual addition (Post-LN)"
        section = Section(f"{'Encoder block' if p else 'Block'} {i}", f"Norm {where}." if cfg.norm != "none" else "No normalisation.")
        section.steps += self.sublayer(p, b, "ln1", "attn", "attn_out", f"{b}.resid_pre", "resid_mid", lambda x: self.attention(p, f"{b}.attn", x, causal))
        resid = f"{b}.resid_mid"
        if self.has(f"{b}.cross_attn_out"):
            section.steps += self.sublayer(p, b, "ln_cross", "cross_attn", "cross_attn_out", resid, "resid_mid_cross",
                                           lambda x: self.attention(p, f"{b}.cross_attn", x, False, cross=True))
            resid = f"{b}.resid_mid_cross"
        if self.has(f"{b}.mlp_out"):
            section.steps += self.sublayer(p, b, "ln2", "mlp", "mlp_out", resid, "resid_post", lambda x: self.mlp(p, f"{b}.mlp", x))
        return section

    def sublayer(self, p, b, norm, what, out, resid_in, resid_out, body) -> list[Step]:
        """Pre-LN: x = x + Sublayer(Norm(x));  Post-LN: x = Norm(x + Sublayer(x))."""
        cfg, rows = self.cfg, self.labels[p]
        label = {"attn": "attention", "cross_attn": "cross-attention", "mlp": "MLP"}[what]
        steps = []
        if cfg.norm_position == "pre":
            x_name = f"{b}.{norm}"
            if cfg.norm != "none":
                steps.append(self.norm_step(f"Norm before the {label} ({norm})", x_name, self.hook("input: residual stream", resid_in, rows=rows), rows))
            steps += body(x_name)
            steps.append(Step(
                f"Residual addition after the {label}",
                [rf"\mathrm{{{_tex(resid_out)}}} = \mathrm{{{_tex(resid_in.rsplit('.', 1)[-1])}}} + \mathrm{{{_tex(out)}}}"],
                [f"{dims(pos=len(rows), d_model=cfg.d_model)} + {dims(pos=len(rows), d_model=cfg.d_model)}"],
                "The sublayer's output is added to the stream it read from.",
                [self.hook(resid_out, f"{b}.{resid_out}", rows=rows)],
            ))
            return steps
        steps += body(resid_in)
        total = self.cache[resid_in][0].cpu().numpy() + self.cache[f"{b}.{out}"][0].cpu().numpy()
        summed = Shown("input: residual + sublayer output", "derived", f"{resid_in} + {b}.{out}", "[0]", total, rows)
        if cfg.norm != "none":
            steps.append(Step(f"Residual addition, then norm ({norm}): Add & Norm", [rf"\mathrm{{{_tex(resid_out)}}} = \mathrm{{Norm}}(x + \mathrm{{{_tex(out)}}})"]))
            steps.append(self.norm_step(f"Norm after the {label} ({norm})", f"{b}.{norm}", summed, rows))
        else:
            steps.append(Step(f"Residual addition after the {label}", [rf"\mathrm{{{_tex(resid_out)}}} = x + \mathrm{{{_tex(out)}}}"], tensors=[summed]))
        return steps

    def attention(self, p: str, a: str, x_name: str, causal: bool, cross: bool = False) -> list[Step]:
        cfg = self.cfg
        q_rows = self.labels[p]
        k_rows = self.labels["encoder."] if cross else q_rows
        nq, nk, e, d = len(q_rows), len(k_rows), cfg.d_head, cfg.d_model
        group = cfg.n_heads // cfg.n_kv_heads
        x, y = "x", ("m" if cross else "x")  # queries read x; keys/values read x, or the memory m
        steps = []
        if cross:
            steps.append(Step("Cross-attention reads the encoder", text="Queries come from the decoder's stream x; keys and values from the encoder output m (the memory), one row per source token."))
        for h in range(cfg.n_heads):
            kv = h // group
            head = f"head {h}"
            qkv = []
            for w, rows_, n_, src_ in (("Q", q_rows, nq, x), ("K", k_rows, nk, y), ("V", k_rows, nk, y)):
                hidx = h if w == "Q" else kv
                qkv.append(self.param(f"W_{w}[{hidx}]", f"{a}.W_{w}", (hidx,)))
                qkv[-1].break_before = True  # one row of tables per role: W, b, result
                if f"{a}.b_{w}" in self.params:
                    qkv.append(self.param(f"b_{w}[{hidx}]", f"{a}.b_{w}", (hidx,)))
                qkv.append(self.hook(f"{w.lower()} = {src_} W_{w} + b_{w}, {head}", f"{a}.{w.lower()}", (0, slice(None), hidx), rows=rows_))
            text = "Three linear maps of the input, one per role." + (f" Query heads {kv * group}..{kv * group + group - 1} share key/value head {kv}." if group > 1 else "")
            if cfg.qk_norm:
                text += " QK-norm then normalises each head's q and k over d_head (next step)."
            if cfg.positional == "rope" and not cross:
                text += " RoPE then rotates q and k by their positions (the tables show them before rotation)."
            steps.append(Step(
                f"{_title(a)}, {head}: queries, keys, values",
                [rf"q = {x} W_Q^{{{h}}} + b_Q^{{{h}}}, \quad k = {y} W_K^{{{kv}}} + b_K^{{{kv}}}, \quad v = {y} W_V^{{{kv}}} + b_V^{{{kv}}}"],
                [f"q: {dims(pos=nq, d_model=d)} @ {dims(d_model=d, d_head=e)} -> {dims(pos=nq, d_head=e)}",
                 f"k, v: {dims(pos=nk, d_model=d)} @ {dims(d_model=d, d_head=e)} -> {dims(pos=nk, d_head=e)}"],
                text, qkv,
            ))
            if cfg.qk_norm:
                normed = []
                for w, rows_, hidx in (("q", q_rows, h), ("k", k_rows, kv)):
                    normed.append(self.param(f"{w}_norm gain", f"{a}.{w}_norm.w"))
                    if f"{a}.{w}_norm.b" in self.params:
                        normed.append(self.param(f"{w}_norm bias", f"{a}.{w}_norm.b"))
                    if self.has(f"{a}.{w}_norm.scale"):
                        normed.append(self.hook(f"sigma of {w}", f"{a}.{w}_norm.scale", (0, slice(None), hidx), rows=rows_))
                    normed.append(self.hook(f"Norm({w}), head {hidx}", f"{a}.{w}_norm", (0, slice(None), hidx), rows=rows_))
                steps.append(Step(f"{_title(a)}, {head}: QK-norm", [r"q \leftarrow \mathrm{Norm}(q), \quad k \leftarrow \mathrm{Norm}(k)"],
                                  [f"{dims(pos=nq, d_head=e)} -> {dims(pos=nq, d_head=e)}, over d_head"],
                                  "The dot products below use the normalised q and k.", normed))
            scale = r"\frac{1}{\sqrt{d_{\mathrm{head}}}}" if cfg.attn_scale is None else f"{cfg.scale:g}"
            eq = rf"\mathrm{{scores}} = {scale}\, q k^\top"
            if cfg.positional == "alibi" and not cross:
                eq += rf" - m_{{{h}}} |i - j|"
            notes = []
            if causal and not cross:
                eq += r" \quad (-\infty \text{ where } j > i)"
                notes.append("The causal mask sets every key after the query to -inf: no looking ahead.")
            notes.append(f"scale = {cfg.scale:.4g}.")
            steps.append(Step(
                f"{_title(a)}, {head}: scores",
                [eq],
                [f"{dims(q_pos=nq, d_head=e)} @ {dims(d_head=e, k_pos=nk)} -> {dims(q_pos=nq, k_pos=nk)}"],
                " ".join(notes),
                [self.hook(f"scores, {head} (query rows, key columns)", f"{a}.scores", (0, h), rows=q_rows, cols=k_rows)],
            ))
            scores = self.cache[f"{a}.scores"][0, h].cpu().numpy()
            steps.append(Step(
                f"{_title(a)}, {head}: softmax, row by row",
                [r"\mathrm{pattern}_{ij} = \frac{\exp(s_{ij} - \max_k s_{ik})}{\sum_{k} \exp(s_{ik} - \max_k s_{ik})}"],
                [f"{dims(q_pos=nq, k_pos=nk)} -> {dims(q_pos=nq, k_pos=nk)}, each row sums to 1"],
                "Each query's scores become weights over the keys.",
                [self.hook(f"pattern, {head}", f"{a}.pattern", (0, h), rows=q_rows, cols=k_rows, heat=True)],
                _softmax_lines(scores, q_rows, self.max_rows, self.max_cols),
            ))
            steps.append(Step(
                f"{_title(a)}, {head}: weighted sum of values",
                [r"z = \mathrm{pattern}\; v"],
                [f"{dims(q_pos=nq, k_pos=nk)} @ {dims(k_pos=nk, d_head=e)} -> {dims(q_pos=nq, d_head=e)}"],
                tensors=[self.hook(f"z, {head}", f"{a}.z", (0, slice(None), h), rows=q_rows)],
            ))
        out = a.rsplit(".", 1)[0] + (".cross_attn_out" if cross else ".attn_out")
        tensors = [self.param(f"W_O[{h}]", f"{a}.W_O", (h,)) for h in range(cfg.n_heads)]
        if f"{a}.b_O" in self.params:
            tensors.append(self.param("b_O", f"{a}.b_O"))
        tensors.append(self.hook(out.rsplit(".", 1)[-1], out, rows=q_rows))
        steps.append(Step(
            f"{_title(a)}: heads combined by W_O",
            [r"\mathrm{out} = \sum_{h} z_h W_O^{h} + b_O \quad (= \mathrm{Concat}(z_0, \ldots) W_O)"],
            [f"per head: {dims(pos=nq, d_head=e)} @ {dims(d_head=e, d_model=d)} -> {dims(pos=nq, d_model=d)}, summed over {cfg.n_heads} heads"],
            "Each head writes back into the residual stream through its own slice of W_O.", tensors,
        ))
        return steps

    def mlp(self, p: str, m: str, x_name: str) -> list[Step]:
        cfg, rows = self.cfg, self.labels[p]
        n, d, f = len(rows), cfg.d_model, cfg.d_mlp
        first = [self.param("W_in", f"{m}.W_in")] + ([self.param("b_in", f"{m}.b_in")] if f"{m}.b_in" in self.params else [])
        act = cfg.act
        if act in GATED:
            first = [self.param("W_gate", f"{m}.W_gate")] + first
            steps = [Step("MLP: gate and linear branch",
                          [r"a = x W_{\mathrm{gate}} + b_{\mathrm{gate}}, \quad u = x W_{\mathrm{in}} + b_{\mathrm{in}}"],
                          [f"{dims(pos=n, d_model=d)} @ {dims(d_model=d, d_mlp=f)} -> {dims(pos=n, d_mlp=f)} (twice)"],
                          tensors=first + [self.hook("gate pre-activation a", f"{m}.pre", rows=rows), self.hook("linear branch u", f"{m}.pre_linear", rows=rows)])]
            post_eq = r"\mathrm{post} = \mathrm{act}(a) \odot u"
        else:
            steps = [Step("MLP: hidden layer", [r"\mathrm{pre} = x W_{\mathrm{in}} + b_{\mathrm{in}}"],
                          [f"{dims(pos=n, d_model=d)} @ {dims(d_model=d, d_mlp=f)} -> {dims(pos=n, d_mlp=f)}"],
                          tensors=first + [self.hook("pre", f"{m}.pre", rows=rows)])]
            post_eq = r"\mathrm{post} = \mathrm{act}(\mathrm{pre})"
        steps.append(Step(f"MLP: activation ({act})", [post_eq, ACT_TEX.get(act, r"\mathrm{act}")],
                          [f"{dims(pos=n, d_mlp=f)} -> {dims(pos=n, d_mlp=f)}, element by element"],
                          tensors=[self.hook("post", f"{m}.post", rows=rows)]))
        out = [self.param("W_out", f"{m}.W_out")] + ([self.param("b_out", f"{m}.b_out")] if f"{m}.b_out" in self.params else [])
        steps.append(Step("MLP: output", [r"\mathrm{mlp\_out} = \mathrm{post}\, W_{\mathrm{out}} + b_{\mathrm{out}}"],
                          [f"{dims(pos=n, d_mlp=f)} @ {dims(d_mlp=f, d_model=d)} -> {dims(pos=n, d_model=d)}"],
                          tensors=out + [self.hook("mlp_out", m.rsplit(".", 1)[0] + ".mlp_out", rows=rows)]))
        return steps

    def final(self, p: str, n_blocks: int) -> list[Step]:
        cfg, rows = self.cfg, self.labels[p]
        last = f"{p}blocks.{n_blocks - 1}.resid_post"
        if cfg.final_norm and cfg.norm != "none":
            return [self.norm_step("Final norm", f"{p}ln_final", self.hook("input: last residual stream", last, rows=rows), rows)]
        return [Step("No final norm", text="The last block's output goes straight on." + (" (Post-LN: it is already normalised.)" if cfg.norm_position == "post" else ""))]

    def output(self) -> Section:
        cfg, rows = self.cfg, self.labels[""]
        vocab = [f"{i} {token_text(self.tokenizer, i)}" for i in range(cfg.d_vocab_out)]
        section = Section("Output", "The final residual stream is read out as scores over the vocabulary.")
        tensors = []
        if cfg.tie_embeddings:
            text = "Tied embeddings: W_U = W_E^T (the embedding matrix shown above, transposed)."
        else:
            text = ""
            tensors.append(self.param("unembedding matrix W_U", "unembed.W_U", cols=vocab))
        if "unembed.b_U" in self.params:
            tensors.append(self.param("b_U", "unembed.b_U", cols=vocab))
        if self.has("unembed_transform"):
            section.steps.append(Step(
                "MLM transform (BERT)", [r"h = \mathrm{Norm}(\mathrm{act}(x W_T + b_T))"],
                [f"{dims(pos=len(rows), d_model=cfg.d_model)} @ [d_model={cfg.d_model}, d_model={cfg.d_model}] -> {dims(pos=len(rows), d_model=cfg.d_model)}"],
                "The unembedding below reads h instead of x.",
                [self.param("W_T", "unembed_transform.W_T"), self.hook("x W_T + b_T", "unembed_transform.pre", rows=rows),
                 *([self.hook("sigma", "unembed_transform.ln.scale", rows=rows)] if self.has("unembed_transform.ln.scale") else []),
                 self.hook("h", "unembed_transform", rows=rows)],
            ))
        tensors.append(self.hook("logits", "logits", rows=rows, cols=vocab))
        section.steps.append(Step("Unembedding", [r"\mathrm{logits} = x W_U + b_U"],
                                  [f"{dims(pos=len(rows), d_model=cfg.d_model)} @ {dims(d_model=cfg.d_model, d_vocab_out=cfg.d_vocab_out)} -> {dims(pos=len(rows), d_vocab_out=cfg.d_vocab_out)}"],
                                  text.strip(), tensors))
        logits = self.cache["logits"][0].double().cpu().numpy()
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        what = "the next token" if cfg.causal else "each position's token"
        section.steps.append(Step(
            "Probabilities", [r"p_i = \mathrm{softmax}(\mathrm{logits}_i)"],
            [f"{dims(pos=len(rows), d_vocab_out=cfg.d_vocab_out)}, each row sums to 1"],
            f"Row i is the model's distribution over {what} at position i.",
            [Shown("probabilities", "derived", "softmax(logits)", "[0]", probs, rows, vocab, heat=True)],
            _top_lines(probs, rows, vocab, causal=cfg.causal),
        ))
        return section

    def classifier(self) -> Section:
        rows = self.labels[""]
        x = self.cache["ln_final"][0, 0].double().cpu().numpy()
        logits = x @ self.params["classifier.W"].astype(np.float64) + self.params["classifier.b"]
        classes = [str(c) for c in range(self.cfg.n_classes)]
        return Section("Classification head", "BERT-style: the class is read from position 0's final vector.", [Step(
            "Class logits", [r"\mathrm{class\_logits} = x_0 W_{\mathrm{cls}} + b_{\mathrm{cls}}"],
            [f"{dims(d_model=self.cfg.d_model)} @ {dims(d_model=self.cfg.d_model, n_classes=self.cfg.n_classes)} -> {dims(n_classes=self.cfg.n_classes)}"],
            f"x_0 is the final stream at position {rows[0]}.",
            [self.param("W_cls", "classifier.W", cols=classes), self.param("b_cls", "classifier.b", cols=classes),
             Shown("class logits", "derived", "ln_final[0, 0] @ classifier.W + classifier.b", "", logits, None, classes)],
        )])


def _index_str(index: tuple) -> str:
    if not index:
        return ""
    parts = [":" if isinstance(i, slice) else str(i) for i in index]
    return "[" + ", ".join(parts) + "]"


def _tex(name: str) -> str:
    return name.replace("_", r"\_")


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
        e = np.exp(s - top)
        lines.append(f"row {rows[i]}: s = {vec(s)}; max = {fmt(top)}; exp(s − max) = {vec(e)}; sum = {fmt(e.sum())}; pattern = {vec(e / e.sum())}")
    return lines


def _top_lines(probs: np.ndarray, rows: list[str], vocab: list[str], causal: bool, k: int = 5) -> list[str]:
    lines = []
    for i in elided(probs.shape[0], 8):
        if i is None:
            lines.append("…")
            continue
        order = np.argsort(-probs[i])[:k]
        best = ", ".join(f"{vocab[j].split(' ', 1)[1]} {probs[i, j]:.3f}" for j in order)
        what = "next token" if causal else "token"
        lines.append(f"position {rows[i]} → {what}: {best}")
    return lines


def trace(model, tokens, *, src=None, tokenizer=None, max_rows: int = 8, max_cols: int = 8) -> Trace:
    """The forward pass of ``model`` on one sequence ``tokens`` (ids: list or 1-D tensor) as a :class:`Trace`.

    ``src`` is the encoder input of an encoder-decoder. ``tokenizer`` (optional) labels tokens with their
    text. Tensors with more than ``max_rows`` rows or ``max_cols`` columns are shown elided (first and
    last entries, with ⋯ between).
    """
    cfg = model.config
    missing = []
    if missing:
        raise InputError(f"explain covers softmax-attention transformers of the 2017 family; not {', '.join(missing)}")
    tokens = _as_ids(tokens, "tokens")
    src_ids = _as_ids(src, "src") if src is not None else None
    if cfg.arch == "encoder-decoder" and src_ids is None:
        raise InputError("explaining an encoder-decoder needs the source sequence (src / --src)")
    if cfg.arch != "encoder-decoder" and src_ids is not None:
        raise InputError(f"a {cfg.arch!r} model takes no source sequence")
    if max_rows < 2 or max_cols < 2:
        raise InputError("max_rows and max_cols must be at least 2")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            kwargs = {"src": torch.tensor([src_ids])} if src_ids is not None else {}
            _, cache = model.run_with_cache(torch.tensor([tokens]), **kwargs)
    finally:
        model.train(was_training)
    builder = _Builder(model, cache, tokens, src_ids, tokenizer, max_rows, max_cols)
    sections = []
    if src_ids is not None:
        sections.append(builder.embedding("encoder."))
        for i in range(cfg.n_layers):
            sections.append(builder.block("encoder.", i, causal=False))
        enc_final = builder.final("encoder.", cfg.n_layers)
        enc_final.append(Step("The memory", text="The encoder's output m is what every decoder block's cross-attention reads.",
                              tensors=[builder.hook("memory m", "encoder.ln_final", rows=builder.labels["encoder."])]))
        sections.append(Section("Encoder output", steps=enc_final))
    sections.append(builder.embedding(""))
    n_blocks = cfg.n_decoder_layers if cfg.arch == "encoder-decoder" else cfg.n_layers
    for i in range(n_blocks):
        sections.append(builder.block("", i, causal=cfg.causal))
    sections.append(Section("Final norm", steps=builder.final("", n_blocks)))
    sections.append(builder.output())
    if cfg.n_classes:
        sections.append(builder.classifier())
    text = (lambda ids: "".join(token_text(tokenizer, t) for t in ids)) if tokenizer is not None else (lambda ids: " ".join(map(str, ids)))
    summary = [("input", text(tokens)), ("token ids", " ".join(map(str, tokens)))]
    if src_ids is not None:
        summary = [("source", text(src_ids)), ("source ids", " ".join(map(str, src_ids)))] + summary
    for name in ("arch", "d_model", "n_layers", "n_heads", "d_head", "n_kv_heads", "d_mlp", "d_vocab", "n_ctx", "norm",
                 "norm_position", "final_norm", "positional", "act", "attn_only", "tie_embeddings", "bias"):
        summary.append((name, str(getattr(cfg, name))))
    summary.append(("scale", f"{cfg.scale:.4g}"))
    article = "an" if cfg.arch[0] in "aeiou" else "a"
    title = f"Forward pass of {article} {cfg.arch} (d_model = {cfg.d_model}, {n_blocks} layer{'s' * (n_blocks != 1)}, {cfg.n_heads} head{'s' * (cfg.n_heads != 1)})"
    return Trace(title, summary, sections, max_rows, max_cols)


def _as_ids(tokens, what: str) -> list[int]:
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() == 2 and tokens.shape[0] == 1:
            tokens = tokens[0]
        if tokens.dim() != 1 or tokens.dtype.is_floating_point:
            raise InputError(f"{what}: explain one sequence of integer token ids, got shape {tuple(tokens.shape)} {tokens.dtype}")
        tokens = tokens.tolist()
    ids = list(tokens)
    if not ids or not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in ids):
        raise InputError(f"{what} must be a non-empty sequence of integer token ids, got {tokens!r}")
    return [int(t) for t in ids]
