"""glassformer -> Hugging Face Llama (``to_hf_llama``): the inverse of :mod:`glassformer.interop.llama`.

A glassformer decoder is a Llama when it is pre-norm RMSNorm with RoPE on the whole head, a SwiGLU MLP,
no biases (or Qwen2's: q/k/v only is not expressible in LlamaConfig, so every bias must be zero) and no
unembedding bias; grouped-query attention (``n_kv_heads``) and tied embeddings carry over. Anything else
raises ConfigError naming each field Llama cannot express, rather than exporting a different function.

    glassformer                       HF LlamaForCausalLM
    W_Q [n_heads, d_model, d_head]    q_proj.weight [n_heads * d_head, d_model]   (nn.Linear: W^T)
    W_O [n_heads, d_head, d_model]    o_proj.weight [d_model, n_heads * d_head]
    mlp.W_gate / W_in / W_out         gate_proj / up_proj / down_proj (transposed)
"""

from __future__ import annotations

import torch

from glassformer.errors import ConfigError, InputError
from glassformer.interop.layout import heads_to_in_out
from glassformer.interop.llama import config_from_hf
from glassformer.interop.source import HFSource
from glassformer.model import ModelConfig, Transformer

_NOT_COMPUTED = ("dropout", "init_std", "n_decoder_layers", "bias")


def hf_llama_config(config: ModelConfig):
    """The ``transformers.LlamaConfig`` computing the same function, or ConfigError naming what differs."""
    from transformers import LlamaConfig

    hf_config = LlamaConfig(
        vocab_size=config.d_vocab, hidden_size=config.d_model, intermediate_size=config.d_mlp,
        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads, num_key_value_heads=config.n_kv_heads,
        head_dim=config.d_head, max_position_embeddings=config.n_ctx, rms_norm_eps=config.norm_eps,
        rope_theta=config.rope_base, hidden_act="silu", tie_word_embeddings=config.tie_embeddings,
        attention_bias=False, mlp_bias=False, bos_token_id=None, eos_token_id=None,
    )
    back = config_from_hf(HFSource(hf_config.to_dict(), None, "export"))
    mine, theirs = config.to_dict(), back.to_dict()
    differ = [f"{k}={mine[k]!r} (Llama: {theirs.get(k)!r})" for k in mine if k not in _NOT_COMPUTED and mine[k] != theirs.get(k)]
    if differ:
        raise ConfigError(f"cannot export to Llama, which has no equivalent for: {'; '.join(differ)}")
    return hf_config


def to_hf_llama(model: Transformer):
    """A ``transformers.LlamaForCausalLM`` (eval mode, float32) whose logits equal ``model(tokens)``."""
    from transformers import LlamaForCausalLM

    cfg = model.config
    hf_config = hf_llama_config(cfg)
    sd = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    nonzero = [k for k, v in sd.items() if (".b_" in k or k.startswith("unembed.b")) and v.abs().max() > 0]
    if nonzero:
        raise InputError(f"cannot export to Llama, which has no biases: {', '.join(nonzero[:4])} are non-zero")
    out = {"model.embed_tokens.weight": sd["embed.W_E"], "model.norm.weight": sd["ln_final.w"]}
    out["lm_head.weight"] = sd["embed.W_E"] if cfg.tie_embeddings else sd["unembed.W_U"].T  # [d_vocab, d_model]
    for i in range(cfg.n_layers):
        hf, gf = f"model.layers.{i}.", f"blocks.{i}."
        out[hf + "input_layernorm.weight"] = sd[gf + "ln1.w"]
        out[hf + "post_attention_layernorm.weight"] = sd[gf + "ln2.w"]
        for name, proj in (("Q", "q_proj"), ("K", "k_proj"), ("V", "v_proj")):
            out[hf + f"self_attn.{proj}.weight"] = heads_to_in_out(sd[gf + f"attn.W_{name}"]).T  # [n * d_head, d_model]
        out[hf + "self_attn.o_proj.weight"] = sd[gf + "attn.W_O"].reshape(-1, cfg.d_model).T  # [d_model, n_heads * d_head]
        out[hf + "mlp.gate_proj.weight"] = sd[gf + "mlp.W_gate"].T  # [d_mlp, d_model]
        out[hf + "mlp.up_proj.weight"] = sd[gf + "mlp.W_in"].T
        out[hf + "mlp.down_proj.weight"] = sd[gf + "mlp.W_out"].T  # [d_model, d_mlp]
    hf_model = LlamaForCausalLM(hf_config)
    missing, unexpected = hf_model.load_state_dict(out, strict=False)
    missing = [k for k in missing if not (cfg.tie_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise InputError(f"Llama export does not fit transformers' LlamaForCausalLM: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return hf_model.eval()


__all__ = ["hf_llama_config", "to_hf_llama"]
