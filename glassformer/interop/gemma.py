"""Gemma (Gemma Team 2024) -> glassformer: Llama's block with two changes, both folded into the weights.

* RMSNorm scaled by (1 + w) instead of w:  Norm(x) = x / sqrt(mean(x^2) + eps) * (1 + w).
  glassformer's RMSNorm multiplies by its weight, so it gets w' = 1 + w (exact up to float32 rounding).
* the token embedding is multiplied by sqrt(d_model):  resid_0 = sqrt(d_model) * W_E[tokens], while the
  unembedding is tied to the unscaled W_E:  logits = Norm(x) W_E^T.  Import unties them:
  W_E' = sqrt(d_model) * W_E (glassformer's embedding) and W_U = W_E^T (``tie_embeddings=False``).

Everything else is Llama's (``interop/llama.py``): RoPE on the whole head, grouped- or multi-query attention
with ``head_dim`` of its own (256 in the released models), and a gated MLP whose gate is GELU's tanh
approximation (``act="geglu_tanh"``). Gemma 2 / 3 (logit soft-capping, sliding layers, extra norms) have
another ``model_type`` and are not read.
"""

from __future__ import annotations

import math

import torch

from glassformer.interop import llama
from glassformer.interop.source import HFSource
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
