"""The table of every hook point (docs/hooks.md), generated from real models.

Each model in :data:`MODELS` runs once with every hook point cached (the optional ones too); each hook's
shape is read off the activation and written with the literature's symbols by its sizes (the sizes below
are all different, so every number names one symbol). ``tests/lens/test_hook_table.py`` checks that the
page is this module's output, and that a model built with any value of any config switch has no hook point
missing from it. Regenerate with

    python -m glassformer.lens.hook_table > docs/hooks.md
"""

from __future__ import annotations

import re

import torch

from glassformer.model.config import ModelConfig
from glassformer.model.hook_aliases import resolve_alias
from glassformer.model.transformer import Transformer

SIZES = dict(batch=3, pos=5, src_pos=7, d_model=48, heads=4, kv_heads=2, d_head=12, d_mlp=40, d_vocab=13,
             n_classes=6, linformer_k=8, patches=9)
SYMBOLS = {3: "batch", 5: "pos", 7: "src_pos", 48: "d_model", 4: "heads", 2: "kv_heads", 12: "d_head", 40: "d_mlp",
           13: "d_vocab", 6: "n_classes", 8: "linformer_k", 10: "1 + n_patches", 1: "1"}

MODELS: dict[str, dict] = {  # name -> config overrides; the first is the reference GPT-style decoder
    "decoder": {},
    "gated-gqa-qknorm": {"act": "swiglu", "n_kv_heads": 2, "qk_norm": True},
    "encoder-decoder": {"arch": "encoder-decoder"},
    "bert": {"arch": "encoder", "embed_norm": True, "unembed_transform": True, "n_classes": 6},
    "vit": {"arch": "encoder", "input": "patches", "image_size": 12, "patch_size": 4, "n_classes": 6},
    "linformer": {"arch": "encoder", "attention": "linformer", "linformer_k": 8},
    "attn-only-no-norm": {"attn_only": True, "norm": "none", "positional": "none"},
}

WHAT = [  # (regex over the templated name, what it holds); the first match describes a row
    (r"pos_embed$", "positional embedding W_pos[positions] or sinusoids; no batch dimension"),
    (r"ln_embed$", "Norm(embed + pos_embed): BERT's embedding norm, the stream's start"),
    (r"embed$", "token embedding W_E[tokens] (vision: [class token ; patches W_patch + b_patch])"),
    (r"resid_pre$", "the residual stream entering block L"),
    (r"ln1$", "Norm(resid_pre): what attention reads"),
    (r"ln2$", "Norm(resid_mid): what the MLP reads"),
    (r"ln_cross$", "Norm(resid_mid): what cross-attention's queries read"),
    (r"ln_final$", "Norm(final stream): what W_U reads"),
    (r"(q_norm|k_norm)\.scale$", "QK-norm's divisor over d_head"),
    (r"q_norm$", "q after QK-norm (before RoPE)"),
    (r"k_norm$", "k after QK-norm (before RoPE)"),
    (r"\.scale$", "the norm's divisor sqrt(mean(x^2) + eps) (of the centred x for LayerNorm)"),
    (r"q_input$", "optional: the query input, one copy per head (patch it per head)"),
    (r"k_input$", "optional: the key input, one copy per key/value head"),
    (r"v_input$", "optional: the value input, one copy per key/value head"),
    (r"attn\.q$", "q = x W_Q + b_Q, before QK-norm and RoPE"),
    (r"attn\.k$", "k = y W_K + b_K, before QK-norm and RoPE"),
    (r"attn\.v$", "v = y W_V + b_V"),
    (r"scores$", "scale q k^T + position bias, -inf where masked"),
    (r"pattern$", "softmax(scores): attention weights (rows sum to 1)"),
    (r"attn\.z$", "z_h = pattern_h v_h"),
    (r"result$", "optional: z_h W_O[h], each head's write into the stream (sum_h + b_O = attn_out)"),
    (r"cross_attn_out$", "cross-attention's output, added to the stream"),
    (r"attn_out$", "sum_h z_h W_O[h] + b_O, added to the stream"),
    (r"resid_mid_cross$", "the stream after cross-attention"),
    (r"resid_mid$", "the stream after attention"),
    (r"mlp\.pre_linear$", "x W_in + b_in: a gated MLP's linear branch"),
    (r"mlp\.pre$", "x W_in + b_in (gated: x W_gate + b_gate), before the activation"),
    (r"mlp\.post$", "act(pre) (gated: act(pre) * pre_linear): neuron activations, what W_out reads"),
    (r"mlp_out$", "post W_out + b_out, added to the stream"),
    (r"resid_post$", "the residual stream leaving block L"),
    (r"unembed_transform\.pre$", "x W_T + b_T: BERT's MLM-head transform"),
    (r"unembed_transform\.ln$", "the transform's norm, Norm(act(x W_T + b_T))"),
    (r"unembed_transform$", "Norm(act(x W_T + b_T)): what W_U reads in BERT"),
    (r"logits$", "the output: x W_U + b_U (a classifier or vision model: class logits)"),
]


def model_inputs(model: Transformer) -> tuple[tuple, dict]:
    g = torch.Generator().manual_seed(0)
    c = model.config
    if c.input == "patches":
        return (torch.randn(SIZES["batch"], c.n_channels, c.image_size, c.image_size, generator=g),), {}
    tokens = torch.randint(0, c.d_vocab, (SIZES["batch"], SIZES["pos"]), generator=g)
    if c.arch == "encoder-decoder":
        return (tokens,), {"src": torch.randint(0, c.d_vocab, (SIZES["batch"], SIZES["src_pos"]), generator=g)}
    return (tokens,), {}


def build(overrides: dict) -> Transformer:
    torch.manual_seed(0)
    fields = dict(d_model=SIZES["d_model"], n_layers=2, n_heads=SIZES["heads"], d_mlp=SIZES["d_mlp"], d_vocab=SIZES["d_vocab"],
                  n_ctx=16)
    return Transformer(ModelConfig(**{**fields, **overrides})).eval()


def hook_shapes(model: Transformer) -> dict[str, str]:
    """Every hook point (optional ones included) -> its symbolic shape, e.g. ``[batch, heads, pos, pos]``."""
    args, kwargs = model_inputs(model)
    with torch.no_grad():
        _, cache = model.run_with_cache(*args, names=model.hook_names(optional=True), **kwargs)
    return {name: "[" + ", ".join(SYMBOLS.get(n, str(n)) for n in t.shape) + "]" for name, t in cache.items()}


def template(name: str) -> str:
    """``blocks.3.attn.z`` -> ``blocks.L.attn.z``; an encoder-decoder's ``encoder.X`` -> ``X`` (same hooks)."""
    return re.sub(r"blocks\.\d+\.", "blocks.L.", name.removeprefix("encoder."))


TL_LAST = {"embed", "pos_embed", "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "q", "k", "v", "z",
           "scores", "pattern", "result", "q_input", "k_input", "v_input", "pre", "post", "pre_linear", "ln1", "ln2", "ln_final"}


def transformer_lens_name(name: str) -> str:
    """TransformerLens's name for a glassformer hook (one that ``resolve_alias`` maps back), or ''."""
    parts = name.split(".")
    last = parts[-1]
    if "cross" in name or name.startswith(("unembed_transform", "encoder.")):
        return ""
    if last == "scale" and parts[-2] in ("ln1", "ln2", "ln_final"):
        candidate = ".".join(parts[:-1] + ["hook_scale"])
    elif last not in TL_LAST:
        return ""
    elif last in ("q_input", "k_input", "v_input"):
        candidate = ".".join(parts[:-2] + ["hook_" + last])
    elif last in ("ln1", "ln2", "ln_final"):
        candidate = name + ".hook_normalized"
    elif last == "scores":
        candidate = ".".join(parts[:-1] + ["hook_attn_scores"])
    else:
        candidate = ".".join(parts[:-1] + ["hook_" + last])
    return candidate if resolve_alias(candidate) == name else ""


def rows() -> list[tuple[str, str, str, str, str]]:
    """(templated name, shape, TransformerLens name, what, models) for every hook point, in forward order.
    A stack's own positions are ``pos`` (the encoder's: src_pos; a vision model's: 1 + n_patches)."""
    table: dict[str, dict] = {}
    for model_name, overrides in MODELS.items():
        model = build(overrides)
        for name, shape in hook_shapes(model).items():
            if name.startswith("encoder."):
                shape = shape.replace("src_pos", "pos")
            shape = shape.replace("1 + n_patches", "pos")
            row = table.setdefault(template(name), {"shapes": {}, "models": []})
            models = row["shapes"].setdefault(shape, [])
            for seen in (models, row["models"]):
                if model_name not in seen:
                    seen.append(model_name)
    out = []
    for name, row in table.items():
        shapes = list(row["shapes"].items())
        shape = shapes[0][0] + "".join(f"; {s} ({', '.join(m)})" for s, m in shapes[1:])
        what = next((text for pattern, text in WHAT if re.search(pattern, name)), "")
        models = "all" if len(row["models"]) == len(MODELS) else ", ".join(row["models"])
        tl = transformer_lens_name(name.replace("blocks.L.", "blocks.0.")).replace("blocks.0.", "blocks.L.")
        out.append((name, shape, tl, what, models))
    return out


def markdown() -> str:
    lines = [
        "# Every hook point",
        "",
        "Generated by `python -m glassformer.lens.hook_table > docs/hooks.md` from the models listed below; a test",
        "checks this page is current and that no config switch adds a hook point missing here.",
        "`L` is a block index. An encoder-decoder's encoder has the same hook points prefixed `encoder.`",
        "(`encoder.embed`, `encoder.blocks.L.attn.z`, `encoder.ln_final`, ...); `pos` is the positions of the stack",
        "that owns the hook (the encoder's: the source's; a vision model's: 1 + n_patches).",
        "Sizes: " + ", ".join(f"`{k}`" for k in ("batch", "pos", "src_pos", "d_model", "heads", "kv_heads", "d_head",
                                                  "d_mlp", "d_vocab", "n_classes", "linformer_k")) +
        " (`kv_heads` = `heads` without grouped-query attention).",
        "",
        "*Optional* hook points (each head's `result`, the per-head `q_input` / `k_input` / `v_input`) are computed",
        "only while something is attached to them, so the default forward never pays for them; `run_with_cache()`",
        "without `names=` includes them after `model.set_use_attn_result(True)` / `model.set_use_split_qkv_input(True)`.",
        "The TransformerLens column is the name TransformerLens 3.9 gives the same activation; either name works",
        "anywhere (`model.hooks`, `run_with_cache(names=...)`, `cache[...]`), and so does `name + \"_grad\"` for a",
        "gradient stored by `run_with_cache(..., grads=True)`. TransformerLens's `hook_q_input` is taken before `ln1`,",
        "glassformer's after it (glassformer/model/hook_aliases.py says what that changes).",
        "",
        "Models: " + "; ".join(f"`{name}` = `{overrides or 'defaults (GPT-style decoder)'}`" for name, overrides in MODELS.items()) + ".",
        "",
        "| hook point | shape | TransformerLens | what it holds | models |",
        "|---|---|---|---|---|",
    ]
    for name, shape, tl, what, models in rows():
        lines.append(f"| `{name}` | {shape} | {f'`{tl}`' if tl else ''} | {what} | {models} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
