"""`glassformer explain`: one forward pass written out equation by equation, with the model's own numbers.

:func:`trace` runs the model once with every hook point cached (``run_with_cache``) and builds a
:class:`Trace`: sections (embedding, each block, the unembedding) made of steps, each with its
equation(s) in LaTeX, the shape of every operand (``[pos=3, d_model=4] @ [d_model=4, d_head=2] ->
[pos=3, d_head=2]``), and the tensors involved. The trace walks the model's modules and each component
says what it computes (``describe()``: its equations and words), so every variant the model offers
(norms, positional schemes, attention patterns, gated MLPs, Transformer-XL memory, image patches) is
written out with its own equation. Every number shown is a hook activation or a parameter
of the model (or, for the few things with no hook, such as the residual sum a Post-LN norm reads, a sum
or softmax of cached activations named in the caption), so the document cannot drift from the code:
``tests/explain/test_trace.py`` reads the numbers back and compares them with ``run_with_cache``.

Rendering lives in :mod:`glassformer.explain.render` (Markdown and self-contained HTML).
"""

from __future__ import annotations

import numpy as np
import torch

from glassformer.errors import InputError
from glassformer.explain.document import Section, Shown, Step, Trace, dims, elided, token_text
from glassformer.explain.trace_attention import _title, attention_steps
from glassformer.model.config import ModelConfig
from glassformer.model.describe import describe
from glassformer.model.norms import RESIDUAL_EQUATIONS, NoNorm
from glassformer.model.segment_memory import describe_memory
from glassformer.model.vision import image_patches


class _Builder:
    """Turns one cached forward pass into sections, walking the model's modules. ``p`` = stack prefix
    ("" or "encoder."). Each component's equations and words come from its ``describe()``."""

    def __init__(self, model, cache, labels: dict, tokenizer, max_rows: int, max_cols: int, residual_labels=None):
        self.model, self.cfg, self.cache, self.tokenizer = model, model.config, cache, tokenizer
        self.max_rows, self.max_cols = max_rows, max_cols
        self.d_model = model.config.d_model
        self.params = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        self.labels = labels  # prefix -> one label per position of the traced segment ("2 c")
        self.resid_labels = residual_labels  # a compiled model's name for each residual dimension ("tokens=a")

    # -- tensors -----------------------------------------------------------------------------------------

    def hook(self, caption, name, index=(0,), rows=None, cols=None, heat=False) -> Shown:
        value = self.cache[name].detach().cpu().numpy()[index]
        return Shown(caption, "hook", name, _index_str(index), value, rows, cols, heat)

    def resid(self, caption, name, index=(0,), rows=None) -> Shown:
        """A residual-stream activation [pos, d_model], its columns named when the model names them."""
        return self.hook(caption, name, index, rows=rows, cols=self.resid_labels)

    def param(self, caption, name, index=(), rows=None, cols=None) -> Shown:
        value = self.params[name][index] if index else self.params[name]
        return Shown(caption, "param", name, _index_str(index), value, rows, cols)

    def has(self, name: str) -> bool:
        return name in self.cache

    def stack(self, p: str):
        return self.model.encoder if p else self.model

    def key_labels(self, p: str, n_keys: int) -> list[str]:
        """Labels of a self-attention's keys, by key index: a Transformer-XL's memory (the tokens of the segment
        before) comes first, then the queries' own tokens."""
        rows = self.labels[p]
        extra = n_keys - len(rows)
        if extra <= 0:
            return rows
        tokens = [label.split(" ", 1)[1] for label in self.labels["memory"][-extra:] + rows]
        return [f"{j} {t}" for j, t in enumerate(tokens)]

    def memory_step(self, a: str, n_memory: int) -> Step:
        mem = describe_memory(self.cfg.memory_len)
        return Step(f"{_title(a)}: {mem.title}", list(mem.equations),
                    [f"keys and values: {dims(memory=n_memory)} + {dims(pos=len(self.labels['']))} positions"],
                    mem.text + f" Here the first {n_memory} rows of k and v below (keys 0..{n_memory - 1}) come from the memory: "
                    f"the states of the segment before; query t is key {n_memory} + t.")

    # -- sections ----------------------------------------------------------------------------------------

    def embedding(self, p: str) -> Section:
        stack, rows = self.stack(p), self.labels[p]
        n, d = len(rows), self.d_model
        section = Section("Encoder embedding" if p else "Embedding", "The input becomes vectors in the residual stream.")
        emb = describe(stack.embed)
        if hasattr(stack.embed, "W_E"):
            vocab_rows = [f"{i} {token_text(self.tokenizer, i)}" for i in range(self.cfg.d_vocab)]
            shapes = [f"W_E {dims(d_vocab=self.cfg.d_vocab, d_model=d)}, rows t -> {dims(pos=n, d_model=d)}"]
            tensors = [self.param("embedding matrix W_E", f"{p}embed.W_E", rows=vocab_rows, cols=self.resid_labels)]
        else:  # images: patches and a class token
            patches = self.images_patches
            patch_dim = patches.shape[-1]
            shapes = [f"{dims(n_patches=n - 1, patch_dim=patch_dim)} @ {dims(patch_dim=patch_dim, d_model=d)} -> "
                      f"{dims(n_patches=n - 1, d_model=d)}, then the class token in front -> {dims(pos=n, d_model=d)}"]
            patch_rows = [f"{i} {label.split(' ', 1)[1]}" for i, label in enumerate(rows[1:])]  # patch i is position i + 1
            tensors = [Shown("patches (flattened pixels)", "derived", "image_patches(image)", "[0]", patches[0], patch_rows),
                       self.param("W_patch", f"{p}embed.W_patch"), self.param("b_patch", f"{p}embed.b_patch"),
                       self.param("class token W_cls", f"{p}embed.W_cls")]
        section.steps.append(Step(emb.title, list(emb.equations), shapes, emb.text, tensors + [self.resid("embed", f"{p}embed", rows=rows)]))
        if stack.pos_embed is not None:
            pe = describe(stack.pos_embed)
            section.steps.append(Step(pe.title, list(pe.equations), [dims(pos=n, d_model=d)], pe.text,
                                      [self.resid("pos_embed", f"{p}pos_embed", index=(), rows=rows)]))
            resid_eq = r"\mathrm{resid}_0 = \mathrm{embed} + \mathrm{pos}"
        else:
            inner = describe(_positions_inside(stack))
            section.steps.append(Step(
                f"Positions: {inner.title if inner else 'none'}",
                text=(f"{inner.title} adds nothing here: it acts inside every attention layer. {inner.text}" if inner
                      else "No positional information at all: only the causal mask (if any) can reveal order."),
            ))
            resid_eq = r"\mathrm{resid}_0 = \mathrm{embed}"
        if stack.ln_embed is not None:
            section.steps.append(self.norm_step("Embedding norm", f"{p}ln_embed", stack.ln_embed, None, rows))
        section.steps.append(Step("The residual stream begins", [resid_eq], [dims(pos=n, d_model=d)],
                                  tensors=[self.resid("resid_0", f"{p}blocks.0.resid_pre", rows=rows)]))
        return section

    def norm_step(self, title: str, name: str, module, shown_input: Shown | None, rows) -> Step:
        desc, d = describe(module), self.d_model
        tensors = [shown_input] if shown_input is not None else []
        if self.has(f"{name}.scale"):
            tensors.append(self.hook("divisor (one per position)", f"{name}.scale", rows=rows))
        tensors.append(self.param("gain w", f"{name}.w", cols=self.resid_labels))
        if f"{name}.b" in self.params:
            tensors.append(self.param("bias b", f"{name}.b", cols=self.resid_labels))
        tensors.append(self.resid("normalised output", name, rows=rows))
        return Step(f"{title}: {desc.title}", list(desc.equations), [f"{dims(pos=len(rows), d_model=d)} -> {dims(pos=len(rows), d_model=d)}, per position"],
                    desc.text, tensors)

    def block(self, p: str, i: int) -> Section:
        block = self.stack(p).blocks[i]
        b = f"{p}blocks.{i}"
        if block.parallel:
            return self.parallel_block(p, i, block)
        equation, rule, where = RESIDUAL_EQUATIONS[block.residual]
        normed = not isinstance(block.ln1, NoNorm)
        intro = f"{rule}: ${equation}$ for every sublayer." if normed else "No normalisation: x ← x + Sublayer(x)."
        section = Section(f"{'Encoder block' if p else 'Block'} {i}", intro)
        pre = where == "branch"
        section.steps += self.sublayer(p, b, block.ln1, "ln1", "attn_out", f"{b}.resid_pre", "resid_mid", pre,
                                       lambda: attention_steps(self, f"{b}.attn", block.attn, cross=False))
        resid = f"{b}.resid_mid"
        if block.cross_attn is not None:
            section.steps += self.sublayer(p, b, block.ln_cross, "ln_cross", "cross_attn_out", resid, "resid_mid_cross", pre,
                                           lambda: attention_steps(self, f"{b}.cross_attn", block.cross_attn, cross=True))
            resid = f"{b}.resid_mid_cross"
        if block.mlp is not None:
            section.steps += self.sublayer(p, b, block.ln2, "ln2", "mlp_out", resid, "resid_post", pre, lambda: self.mlp(p, f"{b}.mlp", block.mlp))
        return section

    def parallel_block(self, p: str, i: int, block) -> Section:
        """GPT-J / GPT-NeoX: x <- x + Attn(Norm1(x)) + MLP(Norm2(x)); both sublayers read the block's input."""
        b, rows, d = f"{p}blocks.{i}", self.labels[p], self.d_model
        section = Section(f"Block {i}", r"Parallel residual (GPT-J, GPT-NeoX / Pythia): $x \leftarrow x + \mathrm{Attn}(\mathrm{Norm}_1(x))"
                          r" + \mathrm{MLP}(\mathrm{Norm}_2(x))$: the attention and the MLP both read the block's input x, "
                          "and both outputs are added to it at once.")
        x = f"{b}.resid_pre"
        section.steps.append(self.norm_step("Norm before the attention (ln1)", f"{b}.ln1", block.ln1, self.resid("input: residual stream x", x, rows=rows), rows))
        section.steps += attention_steps(self, f"{b}.attn", block.attn, cross=False)
        section.steps.append(self.norm_step("Norm before the MLP (ln2), of the same x", f"{b}.ln2", block.ln2,
                                            self.resid("input: residual stream x (not x + attn_out)", x, rows=rows), rows))
        section.steps += self.mlp(p, f"{b}.mlp", block.mlp)
        section.steps.append(Step(
            "Residual addition of both sublayers",
            [r"\mathrm{resid\_mid} = \mathrm{resid\_pre} + \mathrm{attn\_out}",
             r"\mathrm{resid\_post} = \mathrm{resid\_mid} + \mathrm{mlp\_out} = x + \mathrm{attn\_out} + \mathrm{mlp\_out}"],
            [f"{dims(pos=len(rows), d_model=d)} + {dims(pos=len(rows), d_model=d)} + {dims(pos=len(rows), d_model=d)}"],
            "Both outputs are added to the stream the block read; resid_mid (the hook point) is the partial sum with the attention only.",
            [self.resid("resid_mid", f"{b}.resid_mid", rows=rows), self.resid("resid_post", f"{b}.resid_post", rows=rows)],
        ))
        return section

    def sublayer(self, p, b, norm, norm_name, out, resid_in, resid_out, pre: bool, body) -> list[Step]:
        """Pre-LN: x = x + Sublayer(Norm(x));  Post-LN: x = Norm(x + Sublayer(x))."""
        rows, d = self.labels[p], self.d_model
        label = {"attn_out": "attention", "cross_attn_out": "cross-attention", "mlp_out": "MLP"}[out]
        normed = not isinstance(norm, NoNorm)
        steps = []
        if pre:
            if normed:
                steps.append(self.norm_step(f"Norm before the {label} ({norm_name})", f"{b}.{norm_name}", norm, self.resid("input: residual stream", resid_in, rows=rows), rows))
            steps += body()
            post = getattr(self.model.get_submodule(b), f"{norm_name}_post", None)  # Gemma 2 / 3's sandwich norm
            if post is not None:
                steps.append(self.norm_step(f"Norm of the {label}'s output ({norm_name}_post): sandwich norm", f"{b}.{norm_name}_post", post, None, rows))
            steps.append(Step(
                f"Residual addition after the {label}",
                [rf"\mathrm{{{_tex(resid_out)}}} = \mathrm{{{_tex(resid_in.rsplit('.', 1)[-1])}}} + \mathrm{{{_tex(out)}}}"],
                [f"{dims(pos=len(rows), d_model=d)} + {dims(pos=len(rows), d_model=d)}"],
                "The sublayer's output is added to the stream it read from.",
                [self.resid(resid_out, f"{b}.{resid_out}", rows=rows)],
            ))
            return steps
        steps += body()
        total = self.cache[resid_in][0].cpu().numpy() + self.cache[f"{b}.{out}"][0].cpu().numpy()
        summed = Shown("input: residual + sublayer output", "derived", f"{resid_in} + {b}.{out}", "[0]", total, rows, self.resid_labels)
        if normed:
            steps.append(Step(f"Residual addition, then norm ({norm_name}): Add & Norm", [rf"\mathrm{{{_tex(resid_out)}}} = \mathrm{{Norm}}(x + \mathrm{{{_tex(out)}}})"]))
            steps.append(self.norm_step(f"Norm after the {label} ({norm_name})", f"{b}.{norm_name}", norm, summed, rows))
        else:
            steps.append(Step(f"Residual addition after the {label}", [rf"\mathrm{{{_tex(resid_out)}}} = x + \mathrm{{{_tex(out)}}}"], tensors=[summed]))
        return steps

    def mlp(self, p: str, m: str, module) -> list[Step]:
        rows, desc = self.labels[p], describe(module)
        n, d, f = len(rows), self.d_model, module.W_out.shape[0]
        first = [self.param("W_in", f"{m}.W_in", rows=self.resid_labels)] + ([self.param("b_in", f"{m}.b_in")] if f"{m}.b_in" in self.params else [])
        eq = list(desc.equations)
        if hasattr(module, "W_gate"):  # gated (SwiGLU, GeGLU): a gate and a linear branch
            first = [self.param("W_gate", f"{m}.W_gate", rows=self.resid_labels)] + first
            steps = [Step("MLP: gate and linear branch", eq[:1], [f"{dims(pos=n, d_model=d)} @ {dims(d_model=d, d_mlp=f)} -> {dims(pos=n, d_mlp=f)} (twice)"],
                          desc.text, first + [self.hook("gate pre-activation a", f"{m}.pre", rows=rows), self.hook("linear branch u", f"{m}.pre_linear", rows=rows)])]
        else:
            steps = [Step("MLP: hidden layer", eq[:1], [f"{dims(pos=n, d_model=d)} @ {dims(d_model=d, d_mlp=f)} -> {dims(pos=n, d_mlp=f)}"],
                          desc.text, first + [self.hook("pre", f"{m}.pre", rows=rows)])]
        steps.append(Step(f"MLP: activation ({desc.title})", eq[1:3], [f"{dims(pos=n, d_mlp=f)} -> {dims(pos=n, d_mlp=f)}, element by element"],
                          tensors=[self.hook("post", f"{m}.post", rows=rows)]))
        out = [self.param("W_out", f"{m}.W_out", cols=self.resid_labels)] + ([self.param("b_out", f"{m}.b_out", cols=self.resid_labels)] if f"{m}.b_out" in self.params else [])
        steps.append(Step("MLP: output", eq[3:], [f"{dims(pos=n, d_mlp=f)} @ {dims(d_mlp=f, d_model=d)} -> {dims(pos=n, d_model=d)}"],
                          tensors=out + [self.sublayer_output("mlp_out", m.rsplit(".", 1)[0] + ".mlp_out", rows)]))
        return steps

    def sublayer_output(self, caption: str, name: str, rows) -> Shown:
        """A sublayer's output, the hook ``name`` (``...attn_out`` / ``...mlp_out``); with a sandwich norm (Gemma 2 / 3)
        that hook holds the normed output, so the output before its norm is shown, computed from the cached z (heads
        combined by W_O) or post (times W_out), plus the bias."""
        block = name.rsplit(".", 1)[0]
        post = getattr(self.model.get_submodule(block), "ln1_post" if name.endswith(".attn_out") else "ln2_post", None)
        if post is None or name.endswith("cross_attn_out"):
            return self.resid(caption, name, rows=rows)
        if name.endswith(".attn_out"):
            source, z = f"{block}.attn.z", self.cache[f"{block}.attn.z"][0].double().cpu().numpy()  # [pos, heads, d_head]
            value, bias = np.einsum("qhe,hed->qd", z, self.params[f"{block}.attn.W_O"].astype(np.float64)), f"{block}.attn.b_O"
            expr = f"{source} @ W_O"
        else:
            source, act = f"{block}.mlp.post", self.cache[f"{block}.mlp.post"][0].double().cpu().numpy()  # [pos, d_mlp]
            value, bias, expr = act @ self.params[f"{block}.mlp.W_out"].astype(np.float64), f"{block}.mlp.b_out", f"{block}.mlp.post @ W_out"
        if bias in self.params:
            value, expr = value + self.params[bias], expr + " + b"
        return Shown(f"{caption} before its sandwich norm", "derived", expr, "[0]", value, rows, self.resid_labels)

    def final(self, p: str) -> list[Step]:
        stack, rows = self.stack(p), self.labels[p]
        last = f"{p}blocks.{len(stack.blocks) - 1}.resid_post"
        if not isinstance(stack.ln_final, NoNorm):
            return [self.norm_step("Final norm", f"{p}ln_final", stack.ln_final, self.resid("input: last residual stream", last, rows=rows), rows)]
        post = RESIDUAL_EQUATIONS[stack.blocks[-1].residual][2] == "trunk" and not isinstance(stack.blocks[-1].ln1, NoNorm)
        return [Step("No final norm", text="The last block's output goes straight on." + (" (Post-LN: it is already normalised.)" if post else ""))]

    def output(self) -> Section:
        if self.model.unembed is None:
            return self.classifier()
        cfg, rows = self.cfg, self.labels[""]
        vocab = [f"{i} {token_text(self.tokenizer, i)}" for i in range(cfg.d_vocab_out)]
        section = Section("Output", "The final residual stream is read out as scores over the vocabulary.")
        unembed = describe(self.model.unembed)
        tensors = [] if "unembed.W_U" not in self.params else [self.param("unembedding matrix W_U", "unembed.W_U", rows=self.resid_labels, cols=vocab)]
        if "unembed.b_U" in self.params:
            tensors.append(self.param("b_U", "unembed.b_U", cols=vocab))
        if self.model.unembed_transform is not None:
            tr = describe(self.model.unembed_transform)
            section.steps.append(Step(
                tr.title, list(tr.equations),
                [f"{dims(pos=len(rows), d_model=cfg.d_model)} @ [d_model={cfg.d_model}, d_model={cfg.d_model}] -> {dims(pos=len(rows), d_model=cfg.d_model)}"],
                tr.text,
                [self.param("W_T", "unembed_transform.W_T"), self.hook("x W_T + b_T", "unembed_transform.pre", rows=rows),
                 *([self.hook("divisor", "unembed_transform.ln.scale", rows=rows)] if self.has("unembed_transform.ln.scale") else []),
                 self.hook("h", "unembed_transform", rows=rows)],
            ))
        n_seg, start = len(rows), self.cache["logits"].shape[1] - len(rows)
        tail = (0, slice(start, None) if start else slice(None))  # a Transformer-XL input: the traced (last) segment's rows
        tensors.append(self.hook("logits", "logits", index=tail, rows=rows, cols=vocab))
        section.steps.append(Step(unembed.title, list(unembed.equations),
                                  [f"{dims(pos=n_seg, d_model=cfg.d_model)} @ {dims(d_model=cfg.d_model, d_vocab_out=cfg.d_vocab_out)} -> {dims(pos=n_seg, d_vocab_out=cfg.d_vocab_out)}"],
                                  unembed.text, tensors))
        logits = self.cache["logits"][tail].double().cpu().numpy()
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        what = "the next token" if cfg.causal else "each position's token"
        section.steps.append(Step(
            "Probabilities", [r"p_i = \mathrm{softmax}(\mathrm{logits}_i)"],
            [f"{dims(pos=n_seg, d_vocab_out=cfg.d_vocab_out)}, each row sums to 1"],
            f"Row i is the model's distribution over {what} at position i.",
            [Shown("probabilities", "derived", "softmax(logits)", _index_str(tail), probs, rows, vocab, heat=True)],
            _top_lines(probs, rows, vocab, causal=cfg.causal),
        ))
        return section

    def classifier(self) -> Section:
        """class_logits = x_0 W_cls + b_cls from position 0's final vector: a vision model's class token (its only
        output: the ``logits`` hook), or BERT's [CLS] position beside the MLM logits (computed from ``ln_final``)."""
        classes = [str(c) for c in range(self.cfg.n_classes)]
        if self.model.unembed is None:
            intro, logits = "The class is read from the class token's final vector (position 0).", self.hook("class logits", "logits", cols=classes)
        else:
            x = self.cache["ln_final"][0, 0].double().cpu().numpy()
            value = x @ self.params["classifier.W"].astype(np.float64) + self.params["classifier.b"]
            intro = "BERT-style: the class is read from position 0's final vector."
            logits = Shown("class logits", "derived", "ln_final[0, 0] @ classifier.W + classifier.b", "", value, None, classes)
        return Section("Classification head", intro, [Step(
            "Class logits", [r"\mathrm{class\_logits} = x_0 W_{\mathrm{cls}} + b_{\mathrm{cls}}"],
            [f"{dims(d_model=self.d_model)} @ {dims(d_model=self.d_model, n_classes=self.cfg.n_classes)} -> {dims(n_classes=self.cfg.n_classes)}"],
            f"x_0 is the final stream at position {self.labels[''][0]}.",
            [self.param("W_cls", "classifier.W", cols=classes), self.param("b_cls", "classifier.b", cols=classes), logits],
        )])


def _positions_inside(stack):
    """The positional component that acts inside attention (RoPE, ALiBi, T5 bias) of a stack, or None."""
    attn = stack.blocks[0].attn
    return attn.rotary if attn.rotary is not None else attn.score_bias


def _index_str(index: tuple) -> str:
    if not index:
        return ""
    parts = [":" if isinstance(i, slice) and i == slice(None) else (f"{i.start}:" if isinstance(i, slice) else str(i)) for i in index]
    return "[" + ", ".join(parts) + "]"


def _tex(name: str) -> str:
    return name.replace("_", r"\_")


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


def trace(model, tokens, *, src=None, tokenizer=None, max_rows: int = 8, max_cols: int = 8, residual_labels=None) -> Trace:
    """The forward pass of ``model`` on one input as a :class:`Trace`: data (sections of steps, each with its
    equations in LaTeX, the shapes of its operands and the numbers as arrays) that renders as Markdown or HTML.

    ``tokens``: one sequence of token ids (list or 1-D tensor), or one image ([channels, H, W] float) for a
    vision model (``input="patches"``). ``src`` is the encoder input of an encoder-decoder. ``tokenizer``
    (optional) labels tokens with their text; ``residual_labels`` (optional, one per residual dimension, e.g.
    a compiled RASP model's ``tokens=a``) labels the residual stream's columns. A Transformer-XL model given
    more than ``n_ctx`` tokens reads them segment by segment; the trace shows the last segment, whose keys
    include the memory of the one before. Tensors with more than ``max_rows`` rows or ``max_cols`` columns
    are shown elided (first and last entries, with ⋯ between).
    """
    cfg = model.config
    images = getattr(model.embed, "check_images", None)  # a vision model reads images, not ids
    inputs = _as_image(images, tokens) if images is not None else torch.tensor([_as_ids(tokens, "tokens")])
    src_ids = _as_ids(src, "src") if src is not None else None
    if model.encoder is not None and src_ids is None:
        raise InputError("explaining an encoder-decoder needs the source sequence (src / --src)")
    if model.encoder is None and src_ids is not None:
        raise InputError(f"a {cfg.arch!r} model takes no source sequence")
    if max_rows < 2 or max_cols < 2:
        raise InputError("max_rows and max_cols must be at least 2")
    if residual_labels is not None and len(residual_labels) != cfg.d_model:
        raise InputError(f"residual_labels has {len(residual_labels)} names but the model has d_model = {cfg.d_model}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            kwargs = {"src": torch.tensor([src_ids], device=device)} if src_ids is not None else {}
            _, cache = model.run_with_cache(inputs.to(device), **kwargs)
    finally:
        model.train(was_training)
    labels = _labels(model, inputs, cache, tokenizer)
    if src_ids is not None:
        labels["encoder."] = [f"{i} {token_text(tokenizer, t)}" for i, t in enumerate(src_ids)]
    builder = _Builder(model, cache, labels, tokenizer, max_rows, max_cols, residual_labels)
    builder.images_patches = None if images is None else image_patches(inputs.cpu(), cfg.patch_size).double().numpy()
    sections = []
    if src_ids is not None:
        sections.append(builder.embedding("encoder."))
        sections += [builder.block("encoder.", i) for i in range(len(model.encoder.blocks))]
        enc_final = builder.final("encoder.")
        enc_final.append(Step("The memory", text="The encoder's output m is what every decoder block's cross-attention reads.",
                              tensors=[builder.resid("memory m", "encoder.ln_final", rows=builder.labels["encoder."])]))
        sections.append(Section("Encoder output", steps=enc_final))
    sections.append(builder.embedding(""))
    sections += [builder.block("", i) for i in range(len(model.blocks))]
    sections.append(Section("Final norm", steps=builder.final("")))
    sections.append(builder.output())
    if model.classifier is not None and model.unembed is not None:
        sections.append(builder.classifier())
    return Trace(_title_of(model), _summary(model, inputs, src_ids, tokenizer), sections, max_rows, max_cols)


def _labels(model, inputs: torch.Tensor, cache, tokenizer) -> dict[str, list[str]]:
    """One label per position of the traced segment (and, for a Transformer-XL, of the whole input)."""
    if inputs.is_floating_point():  # an image: the class token, then the patches row by row
        per_row = model.config.image_size // model.config.patch_size
        return {"": ["0 [cls]"] + [f"{i + 1} patch {i // per_row},{i % per_row}" for i in range(per_row**2)]}
    ids = inputs[0].tolist()
    n_segment = cache["embed"].shape[1]  # = len(ids), or the last segment's length for a Transformer-XL
    start = len(ids) - n_segment
    return {"": [f"{i} {token_text(tokenizer, t)}" for i, t in enumerate(ids[start:])],  # rows: index in the segment
            "memory": [f"{i} {token_text(tokenizer, t)}" for i, t in enumerate(ids[:start])]}


def _summary(model, inputs: torch.Tensor, src_ids, tokenizer) -> list[tuple[str, str]]:
    cfg = model.config
    if inputs.is_floating_point():
        summary = [("input", f"image {list(inputs.shape[1:])}")]
    else:
        ids = inputs[0].tolist()
        text = (lambda t: "".join(token_text(tokenizer, i) for i in t)) if tokenizer is not None else (lambda t: " ".join(map(str, t)))
        summary = [("input", text(ids)), ("token ids", " ".join(map(str, ids)))]
        if src_ids is not None:
            summary = [("source", text(src_ids)), ("source ids", " ".join(map(str, src_ids)))] + summary
    defaults = ModelConfig()
    for name in ("arch", "d_model", "n_layers", "n_heads", "d_head", "n_kv_heads", "d_mlp", "d_vocab", "n_ctx", "norm",
                 "norm_position", "final_norm", "positional", "act", "attn_only", "tie_embeddings", "bias"):
        summary.append((name, str(getattr(cfg, name))))
    for name in ("attention", "window", "stride", "sparse_pattern", "linformer_k", "memory_len", "input", "image_size", "patch_size", "qk_norm",
                 "layer_n_heads", "layer_d_head", "layer_d_mlp"):
        if getattr(cfg, name) != getattr(defaults, name):  # the variant fields, where they differ from the plain model
            summary.append((name, str(getattr(cfg, name))))
    per_layer_scale = cfg.layer_d_head is not None and cfg.attn_scale is None
    summary.append(("scale", "1/sqrt(d_head) of each layer" if per_layer_scale else f"{cfg.scale:.4g}"))
    return summary


def _title_of(model) -> str:
    cfg, n_blocks = model.config, len(model.blocks)
    article = "an" if cfg.arch[0] in "aeiou" else "a"
    heads = "/".join(str(b.attn.n_heads) for b in model.blocks) if cfg.per_layer else cfg.n_heads
    return f"Forward pass of {article} {cfg.arch} (d_model = {cfg.d_model}, {n_blocks} layer{'s' * (n_blocks != 1)}, {heads} head{'s' * (heads != 1)})"


def _as_image(check_images, image) -> torch.Tensor:
    """One image, checked by the model's own patch embedding: [1, channels, H, W]."""
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(np.asarray(image, dtype=np.float32))
    images = check_images(image[None] if image.dim() in (2, 3) and image.shape[0] != 1 else image)
    if images.shape[0] != 1:
        raise InputError(f"explain one image at a time, got a batch of {images.shape[0]}")
    return images


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
