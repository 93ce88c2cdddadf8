"""OPT (Zhang et al. 2022, "OPT: Open Pre-trained Transformer Language Models") -> glassformer.

OPT is GPT-2's decoder with ReLU, separate q/k/v/out projections (``nn.Linear``), and learned positions
stored with an offset of 2 (``embed_positions.weight[p + 2]`` is position p's vector), which import drops:
W_pos = embed_positions.weight[2:]. Pre-LN models (``do_layer_norm_before``, every size but 350M) map to
``norm_position="pre"`` with a final LayerNorm; the post-LN 350M maps to ``norm_position="post"``, no final norm.
A model whose embedding is narrower than its residual stream (``word_embed_proj_dim != hidden_size``,
with ``project_in`` / ``project_out``) is refused.

    HF name (under model.decoder.)            glassformer
    embed_tokens.weight                       embed.W_E (tied: W_U = W_E^T)
    embed_positions.weight[2:]                pos_embed.W_pos                   [n_ctx, d_model]
    layers.{i}.self_attn_layer_norm           blocks.{i}.ln1
    layers.{i}.self_attn.q/k/v_proj           blocks.{i}.attn.W_Q/W_K/W_V, b_Q/b_K/b_V
    layers.{i}.self_attn.out_proj             blocks.{i}.attn.W_O, b_O
    layers.{i}.final_layer_norm               blocks.{i}.ln2   (the MLP's norm)
    layers.{i}.fc1 / fc2                      blocks.{i}.mlp.W_in, b_in / W_out, b_out
    final_layer_norm                          ln_final
"""

from __future__ import annotations

import torch

from glassformer.errors import CheckpointError
from glassformer.interop.layout import bias_heads, heads_from_linear, out_heads_from_linear
from glassformer.interop.source import HFSource, config_value
from glassformer.model import ModelConfig

ACT_FROM_HF = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh"}
POSITION_OFFSET = 2


def config_from_hf(source: HFSource, has_lm_head: bool = True) -> ModelConfig:
    c = source.config
    d = config_value(source, "hidden_size")
    if c.get("word_embed_proj_dim", d) != d:
        raise CheckpointError(f"{source.name}: OPT with word_embed_proj_dim != hidden_size (project_in/out) is not supported")
    if c.get("layer_norm_elementwise_affine", True) is False:
        raise CheckpointError(f"{source.name}: OPT without LayerNorm weights (layer_norm_elementwise_affine=false) is not supported")
    act = config_value(source, "activation_function", "relu")
    if act not in ACT_FROM_HF:
        raise CheckpointError(f"{source.name}: OPT activation_function {act!r} is not supported (one of {', '.join(ACT_FROM_HF)})")
    pre = bool(c.get("do_layer_norm_before", True))
    return ModelConfig(
        arch="decoder", d_model=d, n_layers=config_value(source, "num_hidden_layers"),
        n_heads=config_value(source, "num_attention_heads"), d_mlp=config_value(source, "ffn_dim"),
        d_vocab=config_value(source, "vocab_size"), n_ctx=config_value(source, "max_position_embeddings"),
        norm="layernorm", norm_position="pre" if pre else "post", final_norm=pre and not c.get("_remove_final_layer_norm", False),
        norm_eps=1e-5, positional="learned", act=ACT_FROM_HF[act],
        tie_embeddings=bool(c.get("tie_word_embeddings", True)) or not has_lm_head, bias=True,
    )


def convert(source: HFSource) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """HF OPTForCausalLM (or a bare OPTModel) -> (config, glassformer parameters)."""
    cfg = config_from_hf(source, has_lm_head="lm_head.weight" in source.weights)
    w = source.weights.with_prefixes("model.decoder.", "decoder.")
    d, h, m = cfg.d_model, cfg.n_heads, cfg.d_mlp
    has_bias = source.config.get("enable_bias", True)

    def bias(name: str, n: int) -> torch.Tensor:
        return w.take(name, n) if has_bias else torch.zeros(n)

    p: dict[str, torch.Tensor] = {
        "embed.W_E": w.take("embed_tokens.weight", cfg.d_vocab, d),
        "pos_embed.W_pos": w.take("embed_positions.weight", cfg.n_ctx + POSITION_OFFSET, d)[POSITION_OFFSET:],  # [n_ctx, d_model]
        "unembed.b_U": torch.zeros(cfg.d_vocab),  # lm_head has no bias
    }
    if cfg.final_norm:
        p["ln_final.w"], p["ln_final.b"] = w.take("final_layer_norm.weight", d), w.take("final_layer_norm.bias", d)
    if not cfg.tie_embeddings:
        p["unembed.W_U"] = source.weights.take("lm_head.weight", cfg.d_vocab, d).T  # [d_model, d_vocab]
    for i in range(cfg.n_layers):
        hf, gf = f"layers.{i}.", f"blocks.{i}."
        for hf_ln, gf_ln in (("self_attn_layer_norm", "ln1"), ("final_layer_norm", "ln2")):
            p[gf + gf_ln + ".w"] = w.take(hf + hf_ln + ".weight", d)
            p[gf + gf_ln + ".b"] = w.take(hf + hf_ln + ".bias", d)
        for name, proj in (("Q", "q_proj"), ("K", "k_proj"), ("V", "v_proj")):
            p[gf + f"attn.W_{name}"] = heads_from_linear(w.take(hf + f"self_attn.{proj}.weight", d, d), h)  # [n_heads, d_model, d_head]
            p[gf + f"attn.b_{name}"] = bias_heads(bias(hf + f"self_attn.{proj}.bias", d), h)  # [n_heads, d_head]
        p[gf + "attn.W_O"] = out_heads_from_linear(w.take(hf + "self_attn.out_proj.weight", d, d), h)
        p[gf + "attn.b_O"] = bias(hf + "self_attn.out_proj.bias", d)
        p[gf + "mlp.W_in"] = w.take(hf + "fc1.weight", m, d).T  # [d_model, d_mlp]
        p[gf + "mlp.b_in"] = bias(hf + "fc1.bias", m)
        p[gf + "mlp.W_out"] = w.take(hf + "fc2.weight", d, m).T  # [d_mlp, d_model]
        p[gf + "mlp.b_out"] = bias(hf + "fc2.bias", d)
    return cfg, p
