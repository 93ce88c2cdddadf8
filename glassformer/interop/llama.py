"""Llama (Touvron et al. 2023) and its family (Mistral, Qwen2) -> glassformer.

A Llama block is GPT-2's pre-norm block with four substitutions, each a glassformer config field:

* RMSNorm instead of LayerNorm, no biases            norm="rmsnorm", bias=False
* RoPE instead of learned positions                  positional="rope", rope_base=rope_theta
* a SwiGLU MLP                                       act="swiglu"  (W_gate, W_in, W_out)
* grouped-query attention                            n_kv_heads = num_key_value_heads

Conventions checked against Hugging Face's code (and held to 1e-4 by the tests):

* HF's ``rotate_half`` pairs dimension i with i + d_head/2 and uses frequency theta_i for both halves
  (``emb = cat(freqs, freqs)``); glassformer's ``Rotary`` pairs the same dimensions with the same angles,
  so W_Q and W_K are copied with no permutation. (Meta's original checkpoints pair (2i, 2i+1) instead;
  HF's conversion script permutes their rows into this layout.)
* HF's ``repeat_kv`` gives query head h the key/value head h // (n_heads / n_kv_heads), as glassformer's
  ``repeat_interleave`` does.
* HF's RMSNorm computes x * rsqrt(mean(x^2) + eps) in float32 and multiplies by the weight after
  casting back to the input dtype; glassformer computes x / sqrt(mean(x^2) + eps) * w in the parameters'
  dtype. In float32 (the default import dtype) both are the same computation up to rounding; in
  bfloat16/float16 HF's upcast is more precise, so compare in float32.

    HF name                                 glassformer
    embed_tokens.weight                     embed.W_E                       [d_vocab, d_model]
    layers.{i}.input_layernorm.weight       blocks.{i}.ln1.w
    layers.{i}.self_attn.q_proj.weight      blocks.{i}.attn.W_Q             [n_heads, d_model, d_head]
    layers.{i}.self_attn.k_proj / v_proj    blocks.{i}.attn.W_K / W_V       [n_kv_heads, d_model, d_head]
    layers.{i}.self_attn.o_proj.weight      blocks.{i}.attn.W_O             [n_heads, d_head, d_model]
    layers.{i}.post_attention_layernorm     blocks.{i}.ln2.w
    layers.{i}.mlp.gate_proj / up_proj      blocks.{i}.mlp.W_gate / W_in    [d_model, d_mlp]
    layers.{i}.mlp.down_proj                blocks.{i}.mlp.W_out            [d_mlp, d_model]
    norm.weight                             ln_final.w
    lm_head.weight                          unembed.W_U (transposed), or tied to W_E

Mistral and Qwen2 store the same tensors under the same names; they differ in which projections carry
biases (``BIASES``) and in sliding-window attention (Mistral's ``sliding_window``), which maps to
glassformer's ``attention="sliding"``: both let query i see keys j with 0 <= i - j < window.
"""

from __future__ import annotations

import torch

from glassformer.errors import CheckpointError
from glassformer.interop.layout import bias_heads, heads_from_linear, out_heads_from_linear
from glassformer.interop.source import HFSource, config_value
from glassformer.model import ModelConfig
from glassformer.model.config import CHOICES

# HF hidden_act of the gate -> glassformer's gated MLP
ACT_FROM_HF = {"silu": "swiglu", "swish": "swiglu", "gelu": "geglu", "gelu_pytorch_tanh": "geglu_tanh"}

# model_type -> which projections have biases: fn(config) -> {"q", "k", "v", "o", "mlp"} -> bool
BIASES = {
    "llama": lambda c: {
        **dict.fromkeys("qkvo", bool(c.get("attention_bias"))), "mlp": bool(c.get("mlp_bias"))
    },
    "mistral": lambda c: {**dict.fromkeys("qkvo", False), "mlp": False},
    "qwen2": lambda c: {**dict.fromkeys("qkv", True), "o": False, "mlp": False},
}


def sliding_window(source: HFSource) -> int | None:
    """The attention window (query i sees keys i - window < j <= i), or None for full causal attention.
    Mistral: ``sliding_window``; Qwen2: only when every layer uses it (``layer_types`` / ``use_sliding_window``);
    a mix of sliding and full layers has no single glassformer config and is refused."""
    c = source.config
    if source.model_type == "mistral":
        return c.get("sliding_window")
    if source.model_type == "qwen2":
        kinds = set(c.get("layer_types") or ["sliding_attention" if c.get("use_sliding_window") else "full_attention"])
        if kinds == {"full_attention"}:
            return None
        if kinds != {"sliding_attention"}:
            raise CheckpointError(f"{source.name}: a mix of sliding-window and full-attention layers is not supported")
        return config_value(source, "sliding_window")
    return None


def attention_fields(source: HFSource) -> dict:
    """The glassformer config fields for the model's attention pattern."""
    window = sliding_window(source)
    if window is None:
        return {}
    if "sliding" not in CHOICES.get("attention", ()):
        raise CheckpointError(f"{source.name}: sliding_window={window} needs glassformer's sliding-window attention")
    return {"attention": "sliding", "window": window}


def rope_theta(source: HFSource) -> float:
    """RoPE's base: ``rope_parameters.rope_theta`` (transformers >= 5) or ``rope_theta`` (older configs).
    Scaled variants (``llama3``, ``linear``, ``dynamic``, ``yarn``, ...) change the frequencies and are
    refused rather than silently computed differently."""
    c = source.config
    params = c.get("rope_parameters") or c.get("rope_scaling") or {}
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ("default", None):
        raise CheckpointError(f"{source.name}: RoPE scaling {rope_type!r} is not supported (only plain RoPE)")
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise CheckpointError(f"{source.name}: partial_rotary_factor != 1 is not supported for Llama")
    return float(params.get("rope_theta") or c.get("rope_theta") or 10000.0)


def config_from_hf(source: HFSource, has_lm_head: bool = True) -> ModelConfig:
    c = source.config
    act = config_value(source, "hidden_act", "silu")
    if act not in ACT_FROM_HF:
        raise CheckpointError(
            f"{source.name}: {source.model_type} hidden_act {act!r} is not supported (one of {', '.join(ACT_FROM_HF)})"
        )
    n_heads = config_value(source, "num_attention_heads")
    d_model = config_value(source, "hidden_size")
    return ModelConfig(
        arch="decoder",
        d_model=d_model,
        n_layers=config_value(source, "num_hidden_layers"),
        n_heads=n_heads,
        d_head=c.get("head_dim") or d_model // n_heads,
        n_kv_heads=c.get("num_key_value_heads") or n_heads,
        d_mlp=config_value(source, "intermediate_size"),
        d_vocab=config_value(source, "vocab_size"),
        n_ctx=config_value(source, "max_position_embeddings", 2048),
        norm="rmsnorm",
        norm_position="pre",
        norm_eps=config_value(source, "rms_norm_eps", 1e-6),
        positional="rope",
        rope_base=rope_theta(source),
        act=ACT_FROM_HF[act],
        tie_embeddings=bool(c.get("tie_word_embeddings", False)) or not has_lm_head,
        # glassformer has one bias switch; when any HF projection has a bias, the others' are loaded as 0
        bias=any(BIASES[source.model_type](c).values()),
        **attention_fields(source),
    )


def convert(source: HFSource) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """HF Llama / Mistral / Qwen2 (*ForCausalLM or the bare *Model) -> (config, glassformer parameters)."""
    cfg = config_from_hf(source, has_lm_head="lm_head.weight" in source.weights)
    w = source.weights.with_prefixes("model.", "")
    d, h, kv, e, m = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_mlp
    has_bias = BIASES[source.model_type](source.config)

    def bias(name: str, *shape: int) -> torch.Tensor:
        """A bias HF has (read it) or lacks (zero, since glassformer's bias switch covers every layer)."""
        which = name.split(".")[-2].removesuffix("_proj")  # q, k, v, o, or gate/up/down -> the MLP
        return w.take(name, *shape) if has_bias.get(which, has_bias["mlp"]) else torch.zeros(shape)

    p: dict[str, torch.Tensor] = {
        "embed.W_E": w.take("embed_tokens.weight", cfg.d_vocab, d),
        "ln_final.w": w.take("norm.weight", d),
    }
    if not cfg.tie_embeddings:
        p["unembed.W_U"] = source.weights.take("lm_head.weight", cfg.d_vocab, d).T  # [d_model, d_vocab]
    if cfg.bias:
        p["unembed.b_U"] = torch.zeros(cfg.d_vocab)  # lm_head has no bias
    for i in range(cfg.n_layers):
        hf, gf = f"layers.{i}.", f"blocks.{i}."
        p[gf + "ln1.w"] = w.take(hf + "input_layernorm.weight", d)
        p[gf + "ln2.w"] = w.take(hf + "post_attention_layernorm.weight", d)
        for name, proj, n in (("Q", "q_proj", h), ("K", "k_proj", kv), ("V", "v_proj", kv)):
            W = w.take(hf + f"self_attn.{proj}.weight", n * e, d)  # nn.Linear [n * d_head, d_model]
            p[gf + f"attn.W_{name}"] = heads_from_linear(W, n)  # [n, d_model, d_head]
            if cfg.bias:
                p[gf + f"attn.b_{name}"] = bias_heads(bias(hf + f"self_attn.{proj}.bias", n * e), n)  # [n, d_head]
        W_o = w.take(hf + "self_attn.o_proj.weight", d, h * e)  # nn.Linear [d_model, n_heads * d_head]
        p[gf + "attn.W_O"] = out_heads_from_linear(W_o, h)  # [n_heads, d_head, d_model]
        p[gf + "mlp.W_gate"] = w.take(hf + "mlp.gate_proj.weight", m, d).T  # [d_model, d_mlp]
        p[gf + "mlp.W_in"] = w.take(hf + "mlp.up_proj.weight", m, d).T  # [d_model, d_mlp]
        p[gf + "mlp.W_out"] = w.take(hf + "mlp.down_proj.weight", d, m).T  # [d_mlp, d_model]
        if cfg.bias:
            p[gf + "attn.b_O"] = bias(hf + "self_attn.o_proj.bias", d)
            p[gf + "mlp.b_gate"] = bias(hf + "mlp.gate_proj.bias", m)
            p[gf + "mlp.b_in"] = bias(hf + "mlp.up_proj.bias", m)
            p[gf + "mlp.b_out"] = bias(hf + "mlp.down_proj.bias", d)
    return cfg, p
