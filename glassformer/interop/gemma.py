"""Gemma (Gemma Team 2024) -> glassformer: Llama's block with two changes, both folded into the weights.

* RMSNorm scaled by (1 + w) instead of w:  Norm(x) = x / sqrt(mean(x^2) + eps) * (1 + w).
  glassformer's RMSNorm multiplies by its weight, so it gets w' = 1 + w (exact up to float32 rounding).
* the token embedding is multiplied by sqrt(d_model):  resid_0 = sqrt(d_model) * W_E[tokens], while the
  unembedding is tied to the unscaled W_E:  logits = Norm(x) W_E^T.  Import unties them:
  W_E' = sqrt(d_model) * W_E (glassformer's embedding) and W_U = W_E^T (``tie_embeddings=False``).

Everything else is Llama's (``interop/llama.py``): RoPE on the whole head, grouped- or multi-query attention
with ``head_dim`` of its own (256 in the released models), and a gated MLP whose gate is GELU's tanh
approximation (``act="geglu_tanh"``).

Gemma 2 (``model_type="gemma2"``) and Gemma 3 (``"gemma3_text"``) keep all of that and add, each a config field:

* sandwich norms: x <- x + Norm_post(Sublayer(Norm(x)))                            sandwich_norm=True
  (HF: input_layernorm -> ln1, post_attention_layernorm -> ln1_post, pre_feedforward_layernorm -> ln2,
  post_feedforward_layernorm -> ln2_post; all (1 + w), folded as above)
* queries scaled by query_pre_attn_scalar^-1/2 instead of d_head^-1/2               attn_scale
* attention logit soft-capping: scores = c tanh(scores / c) (Gemma 2: c = 50)        attn_softcap
* final logit soft-capping: logits = c tanh(logits / c) (Gemma 2: c = 30)            logit_softcap
* alternating layers (``layer_types``): sliding-window layers, every k-th global      attention="sliding", window,
  (Gemma 2: k = 2, Gemma 3: k = 6)                                                  global_every=k
* Gemma 3 only: QK-norm ((1 + w) RMSNorm over d_head, shared by the heads), and    qk_norm=True,
  RoPE base 10,000 on sliding layers, 1,000,000 on global ones                      rope_local_base, rope_base
"""

from __future__ import annotations

import math

import torch

from glassformer.errors import CheckpointError
from glassformer.interop import llama
from glassformer.interop.source import HFSource, config_value
from glassformer.model import ModelConfig


def convert(source: HFSource) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """HF GemmaForCausalLM (or GemmaModel) -> (config, glassformer parameters)."""
    c = dict(source.config)
    act = c.get("hidden_activation") or c.get("hidden_act") or "gelu_pytorch_tanh"
    c["hidden_act"] = "gelu_pytorch_tanh" if act == "gelu" else act  # transformers reads legacy "gelu" as tanh too
    c["tie_word_embeddings"] = True  # Gemma ties lm_head to embed_tokens; untied below
    as_llama = HFSource({**c, "model_type": "llama", "attention_bias": False, "mlp_bias": False}, source.weights, source.name)
    cfg, p = llama.convert(as_llama)
    for name in list(p):
        if name.endswith(("ln1.w", "ln2.w")) or name == "ln_final.w":
            p[name] = 1.0 + p[name]  # (1 + w) RMSNorm
    W_E = p["embed.W_E"]  # [d_vocab, d_model]
    p["embed.W_E"] = W_E * math.sqrt(cfg.d_model)
    p["unembed.W_U"] = W_E.T.contiguous()  # [d_model, d_vocab]: the unscaled embedding
    cfg = ModelConfig.from_dict({**cfg.to_dict(), "tie_embeddings": False})
    return cfg, p


def layer_pattern(source: HFSource) -> int | None:
    """k such that layer l is global exactly when (l + 1) % k == 0 (from ``layer_types``, or the older
    ``sliding_window_pattern``), or None when every layer is global. Another mix is refused."""
    c = source.config
    n = config_value(source, "num_hidden_layers")
    types = c.get("layer_types")
    if types is None:
        k = c.get("sliding_window_pattern", 2)
        return k if c.get("sliding_window") else None
    if all(t == "full_attention" for t in types):
        return None
    global_layers = [i for i, t in enumerate(types) if t == "full_attention"]
    k = global_layers[0] + 1 if global_layers else n + 1
    if [t == "full_attention" for t in types] != [(i + 1) % k == 0 for i in range(n)] or set(types) - {"full_attention", "sliding_attention"}:
        raise CheckpointError(f"{source.name}: layer_types {types} is not 'every k-th layer global', which glassformer's global_every expresses")
    return k


def rope_bases(source: HFSource) -> tuple[float, float]:
    """(global layers' RoPE base, sliding layers' base): transformers 5's per-layer-type ``rope_parameters``, or
    ``rope_theta`` and Gemma 3's ``rope_local_base_freq``."""
    c = source.config
    params = c.get("rope_parameters") or {}
    if "full_attention" in params or "sliding_attention" in params:
        for p in params.values():
            if p.get("rope_type", "default") != "default":
                raise CheckpointError(f"{source.name}: RoPE scaling {p.get('rope_type')!r} is not supported (only plain RoPE)")
        full = params.get("full_attention", {}).get("rope_theta", 10000.0)
        return float(full), float(params.get("sliding_attention", {}).get("rope_theta", full))
    base = llama.rope_theta(source)
    return base, float(c.get("rope_local_base_freq") or base)


def convert_gemma2(source: HFSource) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """HF Gemma2ForCausalLM / Gemma3ForCausalLM (text) -> (config, glassformer parameters): Gemma's conversion,
    then the sandwich norms, QK-norm (Gemma 3) and the config fields of the module docstring."""
    c = source.config
    gemma3 = source.model_type == "gemma3_text"
    global_base, local_base = rope_bases(source)
    plain = {k: v for k, v in c.items() if k not in ("rope_parameters", "rope_scaling", "layer_types", "sliding_window")}
    cfg, p = convert(HFSource({**plain, "rope_theta": global_base}, source.weights, source.name))
    w = source.weights.with_prefixes("model.", "")
    d, e = cfg.d_model, cfg.d_head
    for i in range(cfg.n_layers):
        hf, gf = f"layers.{i}.", f"blocks.{i}."
        p[gf + "ln1_post.w"] = p.pop(gf + "ln2.w")  # Llama's post_attention_layernorm is Gemma 2's post-attention norm
        p[gf + "ln2.w"] = 1.0 + w.take(hf + "pre_feedforward_layernorm.weight", d)
        p[gf + "ln2_post.w"] = 1.0 + w.take(hf + "post_feedforward_layernorm.weight", d)
        if gemma3:
            p[gf + "attn.q_norm.w"] = 1.0 + w.take(hf + "self_attn.q_norm.weight", e)
            p[gf + "attn.k_norm.w"] = 1.0 + w.take(hf + "self_attn.k_norm.weight", e)
    k = layer_pattern(source)
    fields = {
        "sandwich_norm": True, "qk_norm": gemma3,
        "attn_scale": float(config_value(source, "query_pre_attn_scalar", e)) ** -0.5,
        "attn_softcap": c.get("attn_logit_softcapping"), "logit_softcap": c.get("final_logit_softcapping"),
    }
    if k is not None:
        fields.update(attention="sliding", window=config_value(source, "sliding_window"), global_every=k,
                      rope_local_base=local_base if local_base != global_base else None)
    return ModelConfig.from_dict({**cfg.to_dict(), **fields}), p
