"""T5 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning") -> glassformer's encoder-decoder.

``T5ForConditionalGeneration`` is the 2017 encoder-decoder with five changes, each a glassformer config field
or folded into the weights:

* RMS-style T5LayerNorm, no mean and no bias:   Norm(x) = x / sqrt(mean(x^2) + eps) * w     norm="rmsnorm", bias=False
* pre-norm sublayers, a final norm per stack:   x <- x + Sublayer(Norm(x))                 norm_position="pre"
* no 1/sqrt(d_head) in attention:               scores_h = q_h k_h^T + bias_h               attn_scale=1.0
  (T5 folds the scale into the initialisation of W_Q)
* relative position buckets instead of positions: bias_h[i, j] = W_bias[bucket(j - i), h]   positional="t5",
  a table in the first block of each stack that every block of that stack reuses; bidirectional buckets in the
  encoder, causal ones in the decoder's self-attention, none in cross-attention. glassformer's T5RelativeBias
  keeps one table per layer, so the stack's table is copied into each (equal tables are the shared case;
  fine-tuning would let them drift apart).
* the MLP: ReLU (``feed_forward_proj="relu"``, T5 v1.0) or gated-GELU (``"gated-gelu"``, T5 v1.1 / Flan-T5, with
  GELU's tanh approximation, ``gelu_new``)                                                act="relu" / "geglu_tanh"

The token embedding ``shared`` feeds both stacks (copied into the encoder's and the decoder's W_E) and is not
scaled. The unembedding: T5 v1.0 ties ``lm_head`` to ``shared`` and rescales the decoder's output first,
logits = (d_model^-1/2 * Norm(x)) W_E^T; v1.1 / Flan have their own ``lm_head`` and no rescale
(``tie_word_embeddings=false`` in their config.json; transformers >= 5 calls it ``scale_decoder_outputs``).
Import folds the rescale into an untied W_U = d_model^-1/2 * W_E^T, so logits = Norm(x) W_U exactly.

    HF name                                                      glassformer
    shared.weight                                                encoder.embed.W_E, embed.W_E    [d_vocab, d_model]
    encoder.block.{i}.layer.0.layer_norm                         encoder.blocks.{i}.ln1.w
    encoder.block.{i}.layer.0.SelfAttention.q / k / v / o        encoder.blocks.{i}.attn.W_Q / W_K / W_V / W_O
    encoder.block.0.layer.0.SelfAttention.relative_attention_bias  encoder.blocks.*.attn.score_bias.W_bias  [buckets, heads]
    encoder.block.{i}.layer.1.layer_norm                         encoder.blocks.{i}.ln2.w
    encoder.block.{i}.layer.1.DenseReluDense.wi / wo             encoder.blocks.{i}.mlp.W_in / W_out
      (gated: wi_0 = the GELU gate, wi_1 = the linear branch)       (mlp.W_gate, mlp.W_in)
    encoder.final_layer_norm                                     encoder.ln_final.w
    decoder.block.{i}.layer.0 (self-attention), layer.1          blocks.{i}.ln1 / attn, ln_cross / cross_attn
      (EncDecAttention), layer.2 (MLP)                              ln2 / mlp
    decoder.final_layer_norm                                     ln_final.w
    lm_head.weight (or shared.weight, tied)                      unembed.W_U (transposed, rescaled when tied)

Decoding starts from ``decoder_start_token_id`` (T5: the pad id, 0) and ends at ``eos_token_id`` (1, ``</s>``);
``glassformer import`` records both in the checkpoint so ``sample`` decodes as ``model.generate`` does.
"""

from __future__ import annotations

import torch

from glassformer.errors import CheckpointError
from glassformer.interop.layout import heads_from_linear, out_heads_from_linear
from glassformer.interop.source import HFSource, config_value
from glassformer.model import ModelConfig

# HF feed_forward_proj -> glassformer act ("gated-gelu" means GELU's tanh approximation in transformers)
ACT_FROM_HF = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gated-gelu": "geglu_tanh",
               "gated-gelu_new": "geglu_tanh", "gated-silu": "swiglu"}


def scales_output(config: dict) -> bool:
    """Whether logits are computed from d_model^-1/2 * Norm(x) (T5 v1.0's tied head)."""
    if "scale_decoder_outputs" in config:
        return bool(config["scale_decoder_outputs"])
    return config.get("tie_word_embeddings", True) is not False


def config_from_hf(source: HFSource) -> ModelConfig:
    proj = config_value(source, "feed_forward_proj", "relu")
    if proj not in ACT_FROM_HF:
        raise CheckpointError(f"{source.name}: T5 feed_forward_proj {proj!r} is not supported (one of {', '.join(ACT_FROM_HF)})")
    n_layers = config_value(source, "num_layers")
    return ModelConfig(
        arch="encoder-decoder",
        d_model=config_value(source, "d_model"),
        n_layers=n_layers,
        n_decoder_layers=source.config.get("num_decoder_layers") or n_layers,
        n_heads=config_value(source, "num_heads"),
        d_head=config_value(source, "d_kv"),
        d_mlp=config_value(source, "d_ff"),
        d_vocab=config_value(source, "vocab_size"),
        n_ctx=512,  # relative positions: T5 has no maximum length; 512 is what it was trained on
        norm="rmsnorm",
        norm_position="pre",
        norm_eps=config_value(source, "layer_norm_epsilon", 1e-6),
        positional="t5",
        t5_buckets=config_value(source, "relative_attention_num_buckets", 32),
        t5_max_distance=config_value(source, "relative_attention_max_distance", 128),
        attn_scale=1.0,
        act=ACT_FROM_HF[proj],
        tie_embeddings=False,
        bias=False,
    )


def special_tokens(config: dict) -> dict:
    """The ids seq2seq decoding needs: where the decoder starts, and the token that ends an answer."""
    eos = config.get("eos_token_id", 1)
    start = config.get("decoder_start_token_id")
    return {"decoder_start_token_id": int(config.get("pad_token_id", 0) if start is None else start),
            "eos_token_id": int(eos[0] if isinstance(eos, list) else 1 if eos is None else eos)}


def convert(source: HFSource) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """HF T5ForConditionalGeneration (or a bare T5Model, read as tied) -> (config, glassformer parameters)."""
    cfg = config_from_hf(source)
    w = source.weights
    d, h, e, m, V = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp, cfg.d_vocab
    gated = cfg.act in ("geglu_tanh", "swiglu")
    W_E = w.take("shared.weight", V, d)  # [d_vocab, d_model]
    head = w.take("lm_head.weight", V, d) if "lm_head.weight" in w else W_E  # [d_vocab, d_model]
    scale = d**-0.5 if scales_output(source.config) else 1.0
    p: dict[str, torch.Tensor] = {
        "encoder.embed.W_E": W_E.clone(),
        "embed.W_E": W_E.clone(),
        "unembed.W_U": (head.T * scale).contiguous(),  # [d_model, d_vocab]: the rescale folded in
        "encoder.ln_final.w": w.take("encoder.final_layer_norm.weight", d),
        "ln_final.w": w.take("decoder.final_layer_norm.weight", d),
    }

    def attention(hf: str, gf: str) -> None:
        for name, proj in (("Q", "q"), ("K", "k"), ("V", "v")):
            p[gf + f"W_{name}"] = heads_from_linear(w.take(hf + f"{proj}.weight", h * e, d), h)  # [heads, d_model, d_head]
        p[gf + "W_O"] = out_heads_from_linear(w.take(hf + "o.weight", d, h * e), h)  # [heads, d_head, d_model]

    def mlp(hf: str, gf: str) -> None:
        if gated:
            p[gf + "W_gate"] = w.take(hf + "wi_0.weight", m, d).T  # [d_model, d_mlp]: the activated branch
            p[gf + "W_in"] = w.take(hf + "wi_1.weight", m, d).T  # [d_model, d_mlp]: the linear branch
        else:
            p[gf + "W_in"] = w.take(hf + "wi.weight", m, d).T  # [d_model, d_mlp]
        p[gf + "W_out"] = w.take(hf + "wo.weight", d, m).T  # [d_mlp, d_model]

    for stack, n_blocks, gf_stack in (("encoder", cfg.n_layers, "encoder."), ("decoder", cfg.n_decoder_layers, "")):
        table = w.take(f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", cfg.t5_buckets, h)
        for i in range(n_blocks):
            hf, gf = f"{stack}.block.{i}.", f"{gf_stack}blocks.{i}."
            p[gf + "ln1.w"] = w.take(hf + "layer.0.layer_norm.weight", d)
            attention(hf + "layer.0.SelfAttention.", gf + "attn.")
            p[gf + "attn.score_bias.W_bias"] = table.clone()  # [buckets, heads]: the stack's shared table
            ff = 1
            if stack == "decoder":
                p[gf + "ln_cross.w"] = w.take(hf + "layer.1.layer_norm.weight", d)
                attention(hf + "layer.1.EncDecAttention.", gf + "cross_attn.")
                ff = 2
            p[gf + "ln2.w"] = w.take(hf + f"layer.{ff}.layer_norm.weight", d)
            mlp(hf + f"layer.{ff}.DenseReluDense.", gf + "mlp.")
    return cfg, p
