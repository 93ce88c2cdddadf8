"""GPT-2 (Radford et al. 2019) <-> glassformer.

GPT-2 is glassformer's default decoder: pre-LN blocks, learned positions, GELU (tanh approximation),
a final LayerNorm, and the unembedding tied to the token embedding (W_U = W_E^T, no bias).

Hugging Face's GPT-2 uses ``Conv1D`` layers, whose weights are [in, out] (y = x W + b), the transpose of
``nn.Linear``. Queries, keys and values share one matrix ``c_attn`` [d_model, 3 * d_model]: its columns
are Q | K | V, each the heads' d_head columns side by side.

    HF name                       glassformer
    wte.weight                    embed.W_E                       [d_vocab, d_model]
    wpe.weight                    pos_embed.W_pos                 [n_ctx, d_model]
    h.{i}.ln_1 / ln_2             blocks.{i}.ln1 / ln2
    h.{i}.attn.c_attn             blocks.{i}.attn.W_Q, W_K, W_V   [n_heads, d_model, d_head] (+ b_Q, b_K, b_V)
    h.{i}.attn.c_proj             blocks.{i}.attn.W_O             [n_heads, d_head, d_model] (+ b_O)
    h.{i}.mlp.c_fc / c_proj       blocks.{i}.mlp.W_in / W_out     (Conv1D layout already is x W)
    ln_f                          ln_final
    lm_head.weight (= wte)        tied: W_U = W_E^T; unembed.b_U = 0
"""

from __future__ import annotations

import math

import torch

from glassformer.errors import CheckpointError, ConfigError, InputError
from glassformer.interop.layout import bias_heads, heads_from_in_out, heads_to_in_out, out_heads_from_in_out
from glassformer.interop.source import HFSource, config_value
from glassformer.model import ModelConfig, Transformer

# HF activation_function -> glassformer act ("gelu_new", "gelu_fast" and "gelu_pytorch_tanh" are all the
# tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written three ways).
ACT_FROM_HF = {
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
}
ACT_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}

# Fields that do not change the function a model computes, so export ignores them.
_NOT_COMPUTED = ("dropout", "init_std", "n_decoder_layers")
GPT2_VOCAB, GPT2_END_OF_TEXT = 50257, 50256


def config_from_hf(source: HFSource, has_lm_head: bool = True) -> ModelConfig:
    """The glassformer config of an HF GPT-2 config. GPT-2 ties lm_head to wte; an untied checkpoint
    (tie_word_embeddings=false) has its own lm_head, a bare GPT2Model has none and is read as tied."""
    c = source.config
    for flag in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        if c.get(flag):
            raise CheckpointError(f"{source.name}: GPT-2 with {flag}=True is not supported")
    act = config_value(source, "activation_function", "gelu_new")
    if act not in ACT_FROM_HF:
        raise CheckpointError(
            f"{source.name}: GPT-2 activation_function {act!r} is not supported (one of {', '.join(ACT_FROM_HF)})"
        )
    d_model = config_value(source, "n_embd")
    return ModelConfig(
        arch="decoder",
        d_model=d_model,
        n_layers=config_value(source, "n_layer"),
        n_heads=config_value(source, "n_head"),
        d_mlp=c.get("n_inner") or 4 * d_model,
        d_vocab=config_value(source, "vocab_size"),
        n_ctx=config_value(source, "n_positions"),
        norm="layernorm",
        norm_position="pre",
        norm_eps=config_value(source, "layer_norm_epsilon", 1e-5),
        positional="learned",
        act=ACT_FROM_HF[act],
        tie_embeddings=c.get("tie_word_embeddings", True) or not has_lm_head,
        bias=True,
        attn_scale=None if c.get("scale_attn_weights", True) else 1.0,
    )


def convert(source: HFSource) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """HF GPT-2 (GPT2LMHeadModel or GPT2Model) -> (config, glassformer parameters)."""
    cfg = config_from_hf(source, has_lm_head="lm_head.weight" in source.weights)
    w = source.weights.with_prefixes("transformer.", "")
    d, h, m = cfg.d_model, cfg.n_heads, cfg.d_mlp
    p: dict[str, torch.Tensor] = {
        "embed.W_E": w.take("wte.weight", cfg.d_vocab, d),
        "pos_embed.W_pos": w.take("wpe.weight", cfg.n_ctx, d),
        "ln_final.w": w.take("ln_f.weight", d),
        "ln_final.b": w.take("ln_f.bias", d),
        "unembed.b_U": torch.zeros(cfg.d_vocab),  # GPT-2's lm_head has no bias
    }
    if not cfg.tie_embeddings:
        # nn.Linear [d_vocab, d_model] -> W_U [d_model, d_vocab]
        p["unembed.W_U"] = source.weights.take("lm_head.weight", cfg.d_vocab, d).T
    for i in range(cfg.n_layers):
        hf, gf = f"h.{i}.", f"blocks.{i}."
        for hf_ln, gf_ln in (("ln_1", "ln1"), ("ln_2", "ln2")):
            p[gf + gf_ln + ".w"] = w.take(hf + hf_ln + ".weight", d)
            p[gf + gf_ln + ".b"] = w.take(hf + hf_ln + ".bias", d)
        W_qkv = w.take(hf + "attn.c_attn.weight", d, 3 * d)  # [d_model, 3 * d_model]: Q | K | V
        b_qkv = w.take(hf + "attn.c_attn.bias", 3 * d)
        for j, name in enumerate("QKV"):
            p[gf + f"attn.W_{name}"] = heads_from_in_out(W_qkv[:, j * d : (j + 1) * d], h)  # [n_heads, d_model, d_head]
            p[gf + f"attn.b_{name}"] = bias_heads(b_qkv[j * d : (j + 1) * d], h)  # [n_heads, d_head]
        p[gf + "attn.W_O"] = out_heads_from_in_out(w.take(hf + "attn.c_proj.weight", d, d), h)  # [n_heads, d_head, d_model]
        p[gf + "attn.b_O"] = w.take(hf + "attn.c_proj.bias", d)
        p[gf + "mlp.W_in"] = w.take(hf + "mlp.c_fc.weight", d, m)  # [d_model, d_mlp]
        p[gf + "mlp.b_in"] = w.take(hf + "mlp.c_fc.bias", m)
        p[gf + "mlp.W_out"] = w.take(hf + "mlp.c_proj.weight", m, d)  # [d_mlp, d_model]
        p[gf + "mlp.b_out"] = w.take(hf + "mlp.c_proj.bias", d)
    return cfg, p


# -- export ---------------------------------------------------------------------------------------------


def hf_gpt2_config(config: ModelConfig):
    """The ``transformers.GPT2Config`` computing the same function as a glassformer config, or ConfigError
    naming every field GPT-2 cannot express."""
    from transformers import GPT2Config

    if config.act not in ACT_TO_HF:
        raise ConfigError(f"cannot export act={config.act!r} to GPT-2 (one of {', '.join(ACT_TO_HF)})")
    scale_attn_weights = not math.isclose(config.scale, 1.0)
    hf_config = GPT2Config(
        vocab_size=config.d_vocab,
        n_positions=config.n_ctx,
        n_embd=config.d_model,
        n_layer=config.n_layers,
        n_head=config.n_heads,
        n_inner=config.d_mlp,
        activation_function=ACT_TO_HF[config.act],
        layer_norm_epsilon=config.norm_eps,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        scale_attn_weights=scale_attn_weights,
        tie_word_embeddings=config.tie_embeddings,
        # GPT-2's <|endoftext|> (bos = eos) is id 50256 of its 50,257 tokens; another vocabulary has no known end
        # token, so none is declared (a guess would make HF's generate stop on an ordinary token)
        bos_token_id=GPT2_END_OF_TEXT if config.d_vocab == GPT2_VOCAB else None,
        eos_token_id=GPT2_END_OF_TEXT if config.d_vocab == GPT2_VOCAB else None,
    )
    # What GPT-2 can express is whatever reads back from that config unchanged; every other field differs.
    back = config_from_hf(HFSource(hf_config.to_dict(), None, "export"))
    mine, theirs = config.to_dict(), back.to_dict()
    differ = [
        f"{k}={mine[k]!r} (GPT-2: {theirs[k]!r})"
        for k in mine
        if k not in _NOT_COMPUTED and k != "attn_scale" and mine[k] != theirs.get(k)
    ]
    if not math.isclose(config.scale, back.scale, rel_tol=1e-6):
        differ.append(f"attn_scale={config.attn_scale!r} (GPT-2: 1/sqrt(d_head) or 1)")
    if differ:
        raise ConfigError(f"cannot export to GPT-2, which has no equivalent for: {'; '.join(differ)}")
    return hf_config


def to_hf_gpt2(model: Transformer):
    """A ``transformers.GPT2LMHeadModel`` with this model's weights (eval mode, float32); its logits equal
    ``model(tokens)``. Save it with ``.save_pretrained(folder)``. Raises ConfigError if the model is not a
    GPT-2 (e.g. RMSNorm, RoPE, post-LN, grouped-query attention), InputError if it has a non-zero
    unembedding bias (GPT-2's lm_head has none)."""
    from transformers import GPT2LMHeadModel

    cfg = model.config
    hf_config = hf_gpt2_config(cfg)
    sd = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    if sd["unembed.b_U"].abs().max() > 0:
        raise InputError("cannot export to GPT-2: unembed.b_U is non-zero, and GPT-2's lm_head has no bias")
    d = cfg.d_model
    out = {
        "transformer.wte.weight": sd["embed.W_E"],
        "transformer.wpe.weight": sd["pos_embed.W_pos"],
        "transformer.ln_f.weight": sd["ln_final.w"],
        "transformer.ln_f.bias": sd["ln_final.b"],
        "lm_head.weight": sd["embed.W_E"] if cfg.tie_embeddings else sd["unembed.W_U"].T,  # [d_vocab, d_model]
    }
    for i in range(cfg.n_layers):
        hf, gf = f"transformer.h.{i}.", f"blocks.{i}."
        for hf_ln, gf_ln in (("ln_1", "ln1"), ("ln_2", "ln2")):
            out[hf + hf_ln + ".weight"] = sd[gf + gf_ln + ".w"]
            out[hf + hf_ln + ".bias"] = sd[gf + gf_ln + ".b"]
        out[hf + "attn.c_attn.weight"] = torch.cat(
            [heads_to_in_out(sd[gf + f"attn.W_{n}"]) for n in "QKV"], dim=1
        )  # [d_model, 3 * d_model]
        out[hf + "attn.c_attn.bias"] = torch.cat([sd[gf + f"attn.b_{n}"].flatten() for n in "QKV"])  # [3 * d_model]
        out[hf + "attn.c_proj.weight"] = sd[gf + "attn.W_O"].reshape(-1, d)  # [n_heads * d_head, d_model]
        out[hf + "attn.c_proj.bias"] = sd[gf + "attn.b_O"]
        out[hf + "mlp.c_fc.weight"] = sd[gf + "mlp.W_in"]
        out[hf + "mlp.c_fc.bias"] = sd[gf + "mlp.b_in"]
        out[hf + "mlp.c_proj.weight"] = sd[gf + "mlp.W_out"]
        out[hf + "mlp.c_proj.bias"] = sd[gf + "mlp.b_out"]
    hf_model = GPT2LMHeadModel(hf_config)
    hf_model.load_state_dict(out, strict=True)
    return hf_model.eval()
