"""BERT (Devlin et al. 2019) -> glassformer, for masked-LM logits.

BERT is glassformer's encoder with post-LN blocks (the paper's "Add & Norm") and two extra pieces, each
a config field:

* an embedding LayerNorm:   resid_0 = LayerNorm(W_E[tokens] + W_pos[positions] + W_type[0])   embed_norm=True
* the MLM head's transform: h = LayerNorm(GELU(x W_T + b_T)), logits = h W_E^T + b_U         unembed_transform=True

Token types: glassformer has no segment input, and with every token_type_id = 0 (HF's default) the type
embedding is the same vector at every position, so it is folded exactly into the positions:
W_pos' = W_pos + token_type_embeddings[0]. Inputs that use segment B (token_type_ids = 1) are out of scope.
The pooler (dense + tanh on [CLS], used only by next-sentence and classification heads) is not needed for
MLM logits and is not imported.

    HF name (under bert.)                           glassformer
    embeddings.word_embeddings                      embed.W_E
    embeddings.position_embeddings (+ type 0)       pos_embed.W_pos
    embeddings.LayerNorm                            ln_embed
    encoder.layer.{i}.attention.self.query/key/value  blocks.{i}.attn.W_Q/W_K/W_V, b_Q/b_K/b_V
    encoder.layer.{i}.attention.output.dense        blocks.{i}.attn.W_O, b_O
    encoder.layer.{i}.attention.output.LayerNorm    blocks.{i}.ln1   (post-LN: after the residual add)
    encoder.layer.{i}.intermediate.dense            blocks.{i}.mlp.W_in, b_in
    encoder.layer.{i}.output.dense                  blocks.{i}.mlp.W_out, b_out
    encoder.layer.{i}.output.LayerNorm              blocks.{i}.ln2
    cls.predictions.transform.dense / LayerNorm     unembed_transform.W_T, b_T / unembed_transform.ln
    cls.predictions.decoder.weight (= word emb.)    tied: W_U = W_E^T
    cls.predictions.bias                            unembed.b_U
"""

from __future__ import annotations

import torch

from glassformer.errors import CheckpointError
from glassformer.interop.layout import bias_heads, heads_from_linear, out_heads_from_linear
from glassformer.interop.source import HFSource, Weights, config_value
from glassformer.model import ModelConfig

ACT_FROM_HF = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def config_from_hf(source: HFSource, has_decoder: bool = True) -> ModelConfig:
    c = source.config
    if c.get("is_decoder") or c.get("add_cross_attention"):
        raise CheckpointError(f"{source.name}: BERT as a decoder (is_decoder / add_cross_attention) is not supported")
    position_type = c.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise CheckpointError(f"{source.name}: BERT position_embedding_type {position_type!r} is not supported")
    act = config_value(source, "hidden_act", "gelu")
    if act not in ACT_FROM_HF:
        raise CheckpointError(f"{source.name}: BERT hidden_act {act!r} is not supported (one of {', '.join(ACT_FROM_HF)})")
    return ModelConfig(
        arch="encoder",
        d_model=config_value(source, "hidden_size"),
        n_layers=config_value(source, "num_hidden_layers"),
        n_heads=config_value(source, "num_attention_heads"),
        d_mlp=config_value(source, "intermediate_size"),
        d_vocab=config_value(source, "vocab_size"),
        n_ctx=config_value(source, "max_position_embeddings"),
        norm="layernorm",
        norm_position="post",
        final_norm=False,
        norm_eps=config_value(source, "layer_norm_eps", 1e-12),
        positional="learned",
        act=ACT_FROM_HF[act],
        tie_embeddings=bool(c.get("tie_word_embeddings", True)) or not has_decoder,
        embed_norm=True,
        unembed_transform=True,
        bias=True,
    )


def _layer_norm(w: Weights, name: str, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A LayerNorm's (weight, bias); old BERT checkpoints call them gamma and beta."""
    if f"{name}.gamma" in w and f"{name}.weight" not in w:
        return w.take(f"{name}.gamma", d), w.take(f"{name}.beta", d)
    return w.take(f"{name}.weight", d), w.take(f"{name}.bias", d)


def convert(source: HFSource) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """HF BERT with its MLM head (BertForMaskedLM, BertForPreTraining) -> (config, glassformer parameters)."""
    if "cls.predictions.transform.dense.weight" not in source.weights:
        raise CheckpointError(
            f"{source.name}: no masked-LM head (cls.predictions.*); from_hf reads BertForMaskedLM or "
            "BertForPreTraining weights, not a bare BertModel"
        )
    cfg = config_from_hf(source, has_decoder="cls.predictions.decoder.weight" in source.weights)
    w = source.weights.with_prefixes("bert.", "")
    d, h, m = cfg.d_model, cfg.n_heads, cfg.d_mlp
    token_type = w.take("embeddings.token_type_embeddings.weight", config_value(source, "type_vocab_size", 2), d)
    p: dict[str, torch.Tensor] = {
        "embed.W_E": w.take("embeddings.word_embeddings.weight", cfg.d_vocab, d),
        "pos_embed.W_pos": w.take("embeddings.position_embeddings.weight", cfg.n_ctx, d) + token_type[0],  # [n_ctx, d_model]
    }
    p["ln_embed.w"], p["ln_embed.b"] = _layer_norm(w, "embeddings.LayerNorm", d)
    for i in range(cfg.n_layers):
        hf, gf = f"encoder.layer.{i}.", f"blocks.{i}."
        for name, proj in (("Q", "query"), ("K", "key"), ("V", "value")):
            p[gf + f"attn.W_{name}"] = heads_from_linear(w.take(hf + f"attention.self.{proj}.weight", d, d), h)
            p[gf + f"attn.b_{name}"] = bias_heads(w.take(hf + f"attention.self.{proj}.bias", d), h)  # [n_heads, d_head]
        p[gf + "attn.W_O"] = out_heads_from_linear(w.take(hf + "attention.output.dense.weight", d, d), h)
        p[gf + "attn.b_O"] = w.take(hf + "attention.output.dense.bias", d)
        p[gf + "ln1.w"], p[gf + "ln1.b"] = _layer_norm(w, hf + "attention.output.LayerNorm", d)
        p[gf + "mlp.W_in"] = w.take(hf + "intermediate.dense.weight", m, d).T  # [d_model, d_mlp]
        p[gf + "mlp.b_in"] = w.take(hf + "intermediate.dense.bias", m)
        p[gf + "mlp.W_out"] = w.take(hf + "output.dense.weight", d, m).T  # [d_mlp, d_model]
        p[gf + "mlp.b_out"] = w.take(hf + "output.dense.bias", d)
        p[gf + "ln2.w"], p[gf + "ln2.b"] = _layer_norm(w, hf + "output.LayerNorm", d)
    head = source.weights.with_prefixes("cls.predictions.")
    p["unembed_transform.W_T"] = head.take("transform.dense.weight", d, d).T  # [d_model, d_model]
    p["unembed_transform.b_T"] = head.take("transform.dense.bias", d)
    p["unembed_transform.ln.w"], p["unembed_transform.ln.b"] = _layer_norm(head, "transform.LayerNorm", d)
    if not cfg.tie_embeddings:
        p["unembed.W_U"] = head.take("decoder.weight", cfg.d_vocab, d).T  # [d_model, d_vocab]
    # the decoder's bias is what HF's forward adds; tied checkpoints store it once, as cls.predictions.bias
    p["unembed.b_U"] = head.take("decoder.bias" if "decoder.bias" in head else "bias", cfg.d_vocab)
    return cfg, p
