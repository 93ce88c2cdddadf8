"""A glassformer decoder and a Hugging Face ``GPT2LMHeadModel`` of the same shape, with the same weights.

The benchmarks compare glassformer with HF GPT-2 "of the same shape". To make that exact, the glassformer
model is configured as GPT-2 (pre-LN, learned positions, tanh-GELU, tied embeddings, biases, no dropout)
and its random initial weights are copied into the HF model, so both compute the same function: same
parameter count, same FLOPs, same logits (checked by :func:`max_logit_difference`) and, for greedy
sampling, the same tokens. Weight layouts:

    glassformer                                   HF GPT-2 (Conv1D stores weights as [in, out])
    W_Q, W_K, W_V [n_heads, d_model, d_head]  ->  attn.c_attn.weight [d_model, 3 * n_heads * d_head]
    W_O [n_heads, d_head, d_model]            ->  attn.c_proj.weight [n_heads * d_head, d_model]
    W_in [d_model, d_mlp], W_out [d_mlp, d_model] -> mlp.c_fc.weight, mlp.c_proj.weight (same layout)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from glassformer import ModelConfig, Transformer


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


def hf_config(shape: Shape, attn_implementation: str = "sdpa"):
    from transformers import GPT2Config

    config = GPT2Config(
        vocab_size=shape.d_vocab,
        n_positions=shape.n_ctx,
        n_embd=shape.d_model,
        n_layer=shape.n_layers,
        n_head=shape.n_heads,
        n_inner=shape.d_mlp,
        activation_function="gelu_new",  # = tanh approximation
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    config._attn_implementation = attn_implementation
    return config


@torch.no_grad()
def copy_weights(gf: Transformer, hf) -> None:
    """Load glassformer's weights into an HF GPT2LMHeadModel of the same shape."""
    c = gf.config
    h, e, d = c.n_heads, c.d_head, c.d_model
    t = hf.transformer
    t.wte.weight.copy_(gf.embed.W_E)
    t.wpe.weight.copy_(gf.pos_embed.W_pos)
    for block, hb in zip(gf.blocks, t.h):
        a = block.attn
        per_head = [W.permute(1, 0, 2).reshape(d, h * e) for W in (a.W_Q, a.W_K, a.W_V)]  # [d_model, heads*d_head]
        hb.attn.c_attn.weight.copy_(torch.cat(per_head, dim=1))  # [d_model, 3*heads*d_head]
        hb.attn.c_attn.bias.copy_(torch.cat([a.b_Q.reshape(-1), a.b_K.reshape(-1), a.b_V.reshape(-1)]))
        hb.attn.c_proj.weight.copy_(a.W_O.reshape(h * e, d))  # [heads*d_head, d_model]
        hb.attn.c_proj.bias.copy_(a.b_O)
        hb.mlp.c_fc.weight.copy_(block.mlp.W_in)
        hb.mlp.c_fc.bias.copy_(block.mlp.b_in)
        hb.mlp.c_proj.weight.copy_(block.mlp.W_out)
        hb.mlp.c_proj.bias.copy_(block.mlp.b_out)
        hb.ln_1.weight.copy_(block.ln1.w)
        hb.ln_1.bias.copy_(block.ln1.b)
        hb.ln_2.weight.copy_(block.ln2.w)
        hb.ln_2.bias.copy_(block.ln2.b)
    t.ln_f.weight.copy_(gf.ln_final.w)
    t.ln_f.bias.copy_(gf.ln_final.b)


def build_pair(shape: Shape, seed: int = 0, attn_implementation: str = "sdpa", device: str | torch.device = "cpu"):
    """(glassformer Transformer, HF GPT2LMHeadModel) with identical random weights."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    gf = Transformer(glassformer_config(shape))
    hf = GPT2LMHeadModel(hf_config(shape, attn_implementation))
    copy_weights(gf, hf)
    return gf.to(device), hf.to(device)


@torch.no_grad()
def max_logit_difference(gf: Transformer, hf, tokens: torch.Tensor) -> float:
    """max |logits_glassformer - logits_hf| on ``tokens`` [batch, pos]: ~1e-5 when the twins agree."""
    was = gf.training, hf.training
    gf.eval(), hf.eval()
    diff = (gf(tokens) - hf(tokens).logits).abs().max().item()
    gf.train(was[0]), hf.train(was[1])
    return diff


def hf_param_count_matches(gf: Transformer, hf) -> tuple[int, int]:
    """(glassformer params, HF params); they differ only by glassformer's unembedding bias b_U."""
    return sum(p.numel() for p in gf.parameters()), sum(p.numel() for p in hf.parameters())
