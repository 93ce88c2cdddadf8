"""GPT-NeoX (Black et al. 2022) and Pythia (Biderman et al. 2023) -> glassformer.

A GPT-NeoX block is GPT-2's pre-LN block with three changes, each a glassformer config field:

* partial rotary embeddings: RoPE on the first ``rotary_pct`` of each head   positional="rope", rope_fraction
  (Pythia: 25%), pairing dimension i with i + d_rot/2 as glassformer's ``Rotary`` does
* the parallel residual: x + Attn(LN1(x)) + MLP(LN2(x))                     parallel_residual=True
  (``use_parallel_residual``; false gives GPT-2's sequential block)
* an untied unembedding ``embed_out`` with no bias                         tie_embeddings=False

The fused ``query_key_value`` projection is laid out per head: its output, viewed as
[n_heads, 3 * d_head], is each head's q | k | v (unlike GPT-2's Q | K | V over all heads).

    HF name (under gpt_neox.)                     glassformer
    embed_in.weight                               embed.W_E                            [d_vocab, d_model]
    layers.{i}.input_layernorm                    blocks.{i}.ln1
    layers.{i}.attention.query_key_value          blocks.{i}.attn.W_Q/W_K/W_V, b_Q/b_K/b_V
    layers.{i}.attention.dense                    blocks.{i}.attn.W_O, b_O
    layers.{i}.post_attention_layernorm           blocks.{i}.ln2
    layers.{i}.mlp.dense_h_to_4h / dense_4h_to_h  blocks.{i}.mlp.W_in, b_in / W_out, b_out
    final_layer_norm                              ln_final
    embed_out.weight (lm_head.weight in           unembed.W_U (transposed); unembed.b_U = 0
      transformers >= 5, top level)
"""

from __future__ import annotations

import torch

from glassformer.errors import CheckpointError
from glassformer.interop.layout import out_heads_from_linear
from glassformer.interop.source import HFSource, config_value
from glassformer.model import ModelConfig

ACT_FROM_HF = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def rope_fields(source: HFSource) -> dict:
    """``rope_fraction`` and ``rope_base`` from transformers 5's ``rope_parameters`` or the older
    ``rotary_pct`` / ``rotary_emb_base``; scaled RoPE is refused."""
    c = source.config
    params = c.get("rope_parameters") or c.get("rope_scaling") or {}
    if params.get("rope_type", params.get("type", "default")) not in ("default", None):
        raise CheckpointError(f"{source.name}: RoPE scaling {params.get('rope_type')!r} is not supported (only plain RoPE)")
    fraction = params.get("partial_rotary_factor", c.get("rotary_pct", 0.25))
    base = params.get("rope_theta", c.get("rotary_emb_base", 10000.0))
    return {"rope_fraction": float(fraction), "rope_base": float(base)}


def config_from_hf(source: HFSource, has_lm_head: bool = True) -> ModelConfig:
    act = config_value(source, "hidden_act", "gelu")
    if act not in ACT_FROM_HF:
        raise CheckpointError(f"{source.name}: GPT-NeoX hidden_act {act!r} is not supported (one of {', '.join(ACT_FROM_HF)})")
    return ModelConfig(
        arch="decoder",
        d_model=config_value(source, "hidden_size"),
        n_layers=config_value(source, "num_hidden_layers"),
        n_heads=config_value(source, "num_attention_heads"),
        d_mlp=config_value(source, "intermediate_size"),
        d_vocab=config_value(source, "vocab_size"),
        n_ctx=config_value(source, "max_position_embeddings", 2048),
        norm="layernorm",
        norm_position="pre",
        norm_eps=config_value(source, "layer_norm_eps", 1e-5),
        positional="rope",
        **rope_fields(source),
        act=ACT_FROM_HF[act],
        parallel_residual=bool(source.config.get("use_parallel_residual", True)),
        tie_embeddings=bool(source.config.get("tie_word_embeddings", False)) or not has_lm_head,
        bias=True,
    )


def convert(source: HFSource) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """HF GPTNeoXForCausalLM (or a bare GPTNeoXModel, read as tied) -> (config, glassformer parameters)."""
    head = next((n for n in ("embed_out.weight", "lm_head.weight") if n in source.weights), None)  # transformers 5 renamed it
    cfg = config_from_hf(source, has_lm_head=head is not None)
    w = source.weights.with_prefixes("gpt_neox.", "")
    d, h, e, m = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
    attention_bias = source.config.get("attention_bias", True)
    p: dict[str, torch.Tensor] = {
        "embed.W_E": w.take("embed_in.weight", cfg.d_vocab, d),
        "ln_final.w": w.take("final_layer_norm.weight", d),
        "ln_final.b": w.take("final_layer_norm.bias", d),
        "unembed.b_U": torch.zeros(cfg.d_vocab),  # embed_out has no bias
    }
    if not cfg.tie_embeddings:
        p["unembed.W_U"] = source.weights.take(head, cfg.d_vocab, d).T  # [d_model, d_vocab]
    for i in range(cfg.n_layers):
        hf, gf = f"layers.{i}.", f"blocks.{i}."
        for hf_ln, gf_ln in (("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2")):
            p[gf + gf_ln + ".w"] = w.take(hf + hf_ln + ".weight", d)
            p[gf + gf_ln + ".b"] = w.take(hf + hf_ln + ".bias", d)
        W = w.take(hf + "attention.query_key_value.weight", 3 * d, d).reshape(h, 3, e, d)  # rows: head, q|k|v, dim
        b = w.take(hf + "attention.query_key_value.bias", 3 * d).reshape(h, 3, e) if attention_bias else torch.zeros(h, 3, e)
        for j, name in enumerate("QKV"):
            p[gf + f"attn.W_{name}"] = W[:, j].transpose(1, 2).contiguous()  # [n_heads, d_model, d_head]
            p[gf + f"attn.b_{name}"] = b[:, j].contiguous()  # [n_heads, d_head]
        p[gf + "attn.W_O"] = out_heads_from_linear(w.take(hf + "attention.dense.weight", d, d), h)  # [n_heads, d_head, d_model]
        p[gf + "attn.b_O"] = w.take(hf + "attention.dense.bias", d) if attention_bias else torch.zeros(d)
        p[gf + "mlp.W_in"] = w.take(hf + "mlp.dense_h_to_4h.weight", m, d).T  # [d_model, d_mlp]
        p[gf + "mlp.b_in"] = w.take(hf + "mlp.dense_h_to_4h.bias", m)
        p[gf + "mlp.W_out"] = w.take(hf + "mlp.dense_4h_to_h.weight", d, m).T  # [d_mlp, d_model]
        p[gf + "mlp.b_out"] = w.take(hf + "mlp.dense_4h_to_h.bias", d)
    return cfg, p
