"""A glassformer decoder and a Hugging Face ``GPT2LMHeadModel`` of the same shape, with the same weights.

The benchmarks compare glassformer with HF GPT-2 "of the same shape". To make that exact, the glassformer
model is configured as GPT-2 (pre-LN, learned positions, tanh-GELU, tied embeddings, biases, no dropout)
and exported with :func:`glassformer.interop.to_hf_gpt2` (the package's GPT-2 export; tests/interop checks
its logits and that every tensor round-trips exactly), so both compute the same function: same parameter count, same FLOPs, same logits (checked by
:func:`max_logit_difference`) and, for greedy sampling, the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.common import matmul_params, train_flops_per_token
from glassformer import ModelConfig, Transformer
from glassformer.interop import to_hf_gpt2


@dataclass(frozen=True)
class Shape:
    """A GPT-shaped decoder and the batch it is run on."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_ctx: int
    batch: int
    d_vocab: int = 256

    @property
    def d_mlp(self) -> int:
        return 4 * self.d_model

    @property
    def tokens_per_batch(self) -> int:
        return self.batch * self.n_ctx

    @property
    def matmul_params(self) -> int:
        """N of the training-FLOPs formula (``bench/common.py``)."""
        return matmul_params(self.n_layers, self.d_model, self.d_mlp, self.d_vocab)

    @property
    def train_flops_per_token(self) -> float:
        """6 N + 12 n_layers d_model n_ctx."""
        return train_flops_per_token(self.matmul_params, self.n_layers, self.d_model, self.n_ctx)

    def describe(self) -> str:
        return f"{self.n_layers}L d{self.d_model} {self.n_heads}h ctx{self.n_ctx} b{self.batch} V{self.d_vocab}"


def glassformer_config(shape: Shape) -> ModelConfig:
    """GPT-2's architecture in glassformer's vocabulary."""
    return ModelConfig(
        arch="decoder",
        d_model=shape.d_model,
        n_layers=shape.n_layers,
        n_heads=shape.n_heads,
        d_vocab=shape.d_vocab,
        n_ctx=shape.n_ctx,
        norm="layernorm",
        norm_position="pre",
        positional="learned",
        act="gelu_tanh",
        tie_embeddings=True,
        bias=True,
        dropout=0.0,
    )


def build_pair(shape: Shape, seed: int = 0, attn_implementation: str = "sdpa", device: str | torch.device = "cpu"):
    """(glassformer Transformer, HF GPT2LMHeadModel) with identical random weights, both in training mode."""
    torch.manual_seed(seed)
    gf = Transformer(glassformer_config(shape))
    hf = to_hf_gpt2(gf).train()  # a copy: the two sides share no storage
    hf.set_attn_implementation(attn_implementation)
    return gf.to(device), hf.to(device)


@torch.no_grad()
def max_logit_difference(gf: Transformer, hf, tokens: torch.Tensor) -> float:
    """max |logits_glassformer - logits_hf| on ``tokens`` [batch, pos]: ~1e-5 when the twins agree."""
    was = gf.training, hf.training
    gf.eval(), hf.eval()
    diff = (gf(tokens) - hf(tokens).logits).abs().max().item()
    gf.train(was[0]), hf.train(was[1])
    return diff

