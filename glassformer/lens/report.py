"""One self-contained HTML page per model and input: attention patterns, the logit lens, direct logit
attribution and head detector scores, with every figure inlined (``glassformer inspect DIR --html``).

The page is built for the first sequence of the input. Figures are PNGs at a modest resolution so a
small model's report stays well under a few hundred KB.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.lens.attribution import direct_logit_attribution
from glassformer.lens.cache import ModelInput, call_args, run_with_cache, tokens_of
from glassformer.lens.detectors import detect_heads
from glassformer.lens.induction import induction_scores
from glassformer.lens.logit_lens import logit_lens
from glassformer.viz import html as H
from glassformer.viz.lens_plots import plot_attribution, plot_head_scores, plot_logit_lens, show_token
from glassformer.viz.patterns import plot_layer, plot_token_attention

MAX_GRID_POSITIONS = 40  # the logit-lens grid shows at most the last 40 positions
MAX_LABELLED_ROWS = 60  # the named residual dimensions shown (those non-zero on the input)


def token_strings(tokenizer, ids) -> list[str]:
    """Each token id as text (its id in brackets when there is no tokenizer, e.g. a compiled model)."""
    ids = [int(i) for i in ids]
    if tokenizer is None:
        return [f"[{i}]" for i in ids]
    return [tokenizer.decode([i]) for i in ids]


def first_sequence(inputs: ModelInput) -> ModelInput:
    """The inputs of the batch's first row, still batched ([1, pos])."""
    _, kwargs = call_args(inputs)
    tokens = tokens_of(inputs)[:1]
    if not kwargs:
        return tokens
    rows = {k: (v[None] if v.dim() == 1 else v)[:1] for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    return {"tokens": tokens, **rows}


def position_labels(model: nn.Module, inputs: ModelInput, tokenizer) -> list[str]:
    """One label per position of the first sequence: its token's text, or, for an image, [cls] and the patches."""
    x = tokens_of(inputs)[0]
    if x.is_floating_point():
        return ["[cls]"] + [f"p{i}" for i in range(model.config.n_patches)]
    return token_strings(tokenizer, x)


def build_report(model: nn.Module, inputs: ModelInput, *, tokenizer=None, answer: int | None = None,
                 title: str | None = None, top_k: int = 5, residual_labels: list[str] | None = None) -> tuple[str, dict]:
    """The report's HTML and a summary dict (prediction, strongest heads) for ``inputs``' first sequence.
    ``answer``: the token whose logit is attributed (default: the model's top prediction at the end).
    ``residual_labels``: one name per residual dimension (a compiled RASP model's), shown with the stream.
    A section that does not apply to the model (Linformer's patterns are over projected slots; a vision
    model has no vocabulary) says why instead."""
    model.eval()
    inputs = first_sequence(inputs)
    text = position_labels(model, inputs, tokenizer)
    src = inputs.get("src") if isinstance(inputs, dict) else None
    src_text = token_strings(tokenizer, src[0]) if src is not None else None
    logits, cache = run_with_cache(model, inputs)
    classes = model.unembed is None  # a vision model: class logits [batch, n_classes]
    log_probs = (logits[0] if classes else logits[0, -1]).float().log_softmax(-1)  # at the last position
    top = log_probs.topk(min(top_k, log_probs.shape[0]))
    predicted = [(int(i), float(p.exp())) for p, i in zip(top.values, top.indices)]
    name = (lambda i: f"class {i}") if classes else (lambda i: token_strings(tokenizer, [i])[0])
    summary: dict = {"prediction": [(name(i), round(p, 4)) for i, p in predicted]}
    sections = [("Model and input", _overview(model, text, src_text, predicted, name, classes))]
    if residual_labels is not None:
        sections.append(("Residual stream, by name", _residual_section(model, cache, text, residual_labels, summary)))
    sections.append(("Attention patterns", _attention_section(model, cache, text, src_text)))
    try:
        scores = detect_heads(model, inputs)
    except InputError as e:
        sections.append(("Head detectors", f'<p class="note">Not available for this model: {H.esc(e)}</p>'))
    else:
        probe = _induction_over_lengths(model) if "induction" in scores else None
        if probe is not None:  # on one input a fixed-offset head looks like an induction head: score several repeats
            scores["induction"] = probe.scores
            summary["induction_lengths"] = list(probe.lengths)
        sections.append(("Head detectors", _detector_section(scores, summary)))
        sections.append(("Token by token", _token_view(model, cache, text, scores)))
    sections.append(("Logit lens", _lens_section(model, inputs, text, tokenizer)))
    sections.append(("Direct logit attribution", _attribution_section(model, cache, predicted, answer, name, summary)))
    cfg = model.config
    subtitle = f"{cfg.arch}, {cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}; made by glassformer inspect"
    return H.page(title or "glassformer inspect", sections, subtitle=subtitle), summary


def write_report(path: str | Path, model: nn.Module, inputs: ModelInput, **options) -> tuple[Path, dict]:
    """Build the report and write it to ``path`` (UTF-8); returns the path and the summary."""
    page, summary = build_report(model, inputs, **options)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    summary["bytes"] = path.stat().st_size
    return path, summary


# -- sections ----------------------------------------------------------------------------------------


def _tokens_html(text: list[str]) -> str:
    return " ".join(f'<span class="tok">{H.esc(show_token(t))}</span>' for t in text)


def _overview(model, text, src_text, predicted, name, classes: bool) -> str:
    cfg = model.config
    fields = ["arch", "n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx", "norm", "norm_position",
              "positional", "act", "attention", "attn_only"]
    body = H.table(["field", "value"], [(f, getattr(cfg, f)) for f in fields] + [("parameters", f"{model.num_params():,}")])
    if src_text is not None:
        body += f"<p>Source ({len(src_text)} tokens): {_tokens_html(src_text)}</p>"
    body += f"<p>Input ({len(text)} {'positions' if classes else 'tokens'}): {_tokens_html(text)}</p>"
    rows = [(show_token(name(i)), i, f"{p:.3f}") for i, p in predicted]
    what = "Class prediction (from the class token)" if classes else "Next-token prediction at the last position"
    body += f"<p>{what}:</p>" + H.table(["token" if not classes else "class", "id", "probability"], rows)
    return body


def _residual_section(model, cache, text, labels, summary) -> str:
    """The final residual stream with its dimensions named (a compiled program's variables): one row per
    named dimension that holds anything on this input, one column per position."""
    if len(labels) != model.config.d_model:
        raise InputError(f"residual_labels has {len(labels)} names but the model has d_model = {model.config.d_model}")
    last = f"blocks.{len(model.blocks) - 1}.resid_post"
    resid = cache[last][0]  # [pos, d_model]
    used = [j for j in range(resid.shape[-1]) if resid[:, j].abs().max() > 1e-6]
    summary["residual_labels"] = len(labels)
    rows = [(H.esc(labels[j]), *(f"{float(v):.3g}" for v in resid[:, j])) for j in used[:MAX_LABELLED_ROWS]]
    note = (f'<p class="note">The residual stream after the last block ({last.rsplit(".", 1)[0]}), each dimension under its name '
            f"(a compiled program's variable = value): {len(used)} of {len(labels)} dimensions are non-zero on this input"
            + (f"; the first {MAX_LABELLED_ROWS} are shown" if len(used) > MAX_LABELLED_ROWS else "") + ".</p>")
    return note + H.table(["dimension", *(show_token(t) for t in text)], rows)


def _attention_section(model, cache, text, src_text) -> str:
    parts = ['<p class="note">Rows are queries, columns keys; each row sums to 1.</p>']
    stacks = []
    if model.encoder is not None:
        stacks.append(("encoder self-attention", "encoder.", "attn", src_text, None))
    stacks.append(("self-attention", "", "attn", text, None))
    if model.encoder is not None:
        stacks.append(("cross-attention (keys: source)", "", "cross_attn", text, src_text))
    for name, prefix, kind, queries, keys in stacks:
        module = model.encoder if prefix else model
        for l in range(len(module.blocks)):
            attn = getattr(module.blocks[l], kind)
            pattern = cache[f"{prefix}blocks.{l}.{kind}.pattern"][0]  # [heads, q, k]
            n_q, n_k = pattern.shape[-2:]  # a Transformer-XL's last segment: its queries, and the memory's keys before them
            columns = (keys or queries)[-n_k:]
            if getattr(attn, "key_axis", "positions") != "positions":  # Linformer: columns are projected slots
                columns = [f"{attn.key_axis[:-1]} {j}" for j in range(n_k)]
                parts.append(f'<p class="note">Layer {l}: {H.esc(attn.pattern_text())}</p>')
            fig = plot_layer(pattern, queries[-n_q:], columns, layer=l, title=f"{name}, layer {l}")
            parts.append(H.img(fig, f"{name} layer {l}", dpi=90))
    return "".join(parts)


def _induction_over_lengths(model):
    """The induction detector over repeats of several lengths at several offsets, or None where it does not apply."""
    try:
        return induction_scores(model)
    except InputError:
        return None


def _detector_section(scores, summary) -> str:
    fig = plot_head_scores(scores, title="head detector scores on this input")
    rows = []
    for name, s in scores.items():
        flat = torch.nan_to_num(s, nan=-1.0).flatten()
        best = int(flat.argmax())
        layer, head = divmod(best, s.shape[1])
        value = float(s[layer, head])
        rows.append((name.replace("_", " "), f"L{layer}H{head}", "n/a" if value != value else f"{value:.3f}"))
        summary.setdefault("strongest_heads", {})[name] = (f"L{layer}H{head}", None if value != value else round(value, 4))
    note = ('<p class="note">Share of each head\'s attention on: the previous token; the first token; earlier copies '
            "of the current token; the token after an earlier copy of the current token (induction). "
            "NaN-free scores need an input with repeated tokens." + (
                f" The induction score is not taken on this input but averaged over random repeats of "
                f"{min(summary['induction_lengths'])}-{max(summary['induction_lengths'])} tokens at varying offsets, so a "
                "head that attends a fixed distance back is not mistaken for an induction head." if "induction_lengths" in summary else "")
            + "</p>")
    return note + H.img(fig, "head detector scores", dpi=96) + H.table(["detector", "strongest head", "score"], rows)


def _token_view(model, cache, text, scores) -> str:
    best_name, best_value, best_head = None, -1.0, (0, 0)
    for name, s in scores.items():
        flat = torch.nan_to_num(s, nan=-1.0)
        if float(flat.max()) > best_value:
            best_value, best_name = float(flat.max()), name
            best_head = divmod(int(flat.flatten().argmax()), s.shape[1])
    layer, head = best_head
    pattern = cache[f"blocks.{layer}.attn.pattern"][0, head]  # [q, k]
    fig = plot_token_attention(pattern, text, query=len(text) - 1,
                               title=f"L{layer}H{head} ({best_name.replace('_', ' ')} score {best_value:.2f}): attention from the last token")
    return H.img(fig, "token-by-token attention", dpi=96)


def _lens_section(model, inputs, text, tokenizer) -> str:
    try:
        lens = logit_lens(model, inputs)
    except InputError as e:
        return f'<p class="note">Not available for this model: {H.esc(e)}</p>'

    probs, ids = lens.top_k(1)  # [layers, 1, pos, 1]
    text = text[-probs.shape[2]:]  # a Transformer-XL input longer than n_ctx: the lens reads the last segment
    keep = slice(max(0, len(text) - MAX_GRID_POSITIONS), len(text))
    grid_ids = ids[:, 0, keep, 0]  # [layers, pos]
    grid_text = [token_strings(tokenizer, row) for row in grid_ids]
    fig = plot_logit_lens(probs[:, 0, keep, 0], grid_text, lens.labels, text[keep])
    note = ('<p class="note">Each residual stream read through the final norm and the unembedding; a cell shows the '
            "most likely next token there and is shaded by its probability.</p>")
    return note + H.img(fig, "logit lens", dpi=96)


def _attribution_section(model, cache, predicted, answer, name, summary) -> str:
    """DLA of the top prediction against the runner-up: at the last position, or a vision model's class logits."""
    try:
        answer_id = predicted[0][0] if answer is None else int(answer)
        wrong_id = next((i for i, _ in predicted if i != answer_id), None)
        attribution = direct_logit_attribution(model, cache, answer_id, wrong_id)
    except InputError as e:
        return f'<p class="note">Not available for this model: {H.esc(e)}</p>'
    what = f"logit({name(answer_id)!r})" + (f" - logit({name(wrong_id)!r})" if wrong_id is not None else "")
    fig = plot_attribution(attribution.values[:, 0], attribution.labels, title=f"direct effect on {what}")
    total = float(attribution.total[0])
    summary["attribution"] = {"target": what, "total": round(total, 4), "top": [(n, round(v, 4)) for n, v in attribution.top(5)]}
    note = (f'<p class="note">Each component\'s write into the residual stream, through the final norm (scale '
            f"fixed at the forward pass's), projected on the direction of {H.esc(what)} = {total:.3f}; the bars sum to it.</p>")
    return note + H.img(fig, "direct logit attribution", dpi=96)
