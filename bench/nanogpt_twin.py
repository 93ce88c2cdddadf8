"""A minimal from-scratch GPT with nanoGPT's ``model.py`` semantics, and a glassformer model with its weights.

This is the peer people write themselves for a small model (Karpathy's nanoGPT, ``model.py``): one fused
``c_attn`` Linear for q, k and v, ``F.scaled_dot_product_attention(is_causal=True)``, LayerNorm with bias,
exact GELU, tied ``wte`` / ``lm_head``, no dropout. Written here from its equations (nanoGPT is not a
package); :func:`nanogpt_from_glassformer` copies a glassformer model's weights into it, so both compute
the same function (``max_logit_difference`` checks ~1e-6).

Its ``generate`` is nanoGPT's: no KV cache; every step re-runs the sequence cropped to ``block_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glassformer import ModelConfig, Transformer


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.n_head, self.n_embd = n_head, n_embd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # [B, nh, T, hs]
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd: int, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int, bias: bool = True):
        super().__init__()
        self.block_size = block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList([Block(n_embd, n_head, bias) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd, bias=bias),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))  # [b, t, vocab]

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """nanoGPT's generate, greedy: crop to block_size, run everything, take the argmax of the last logits."""
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.block_size else idx[:, -self.block_size :]
            logits = self(idx_cond)[:, -1, :]
            idx = torch.cat((idx, logits.argmax(-1, keepdim=True)), dim=1)
        return idx


def nanogpt_config(n_layers: int, d_model: int, n_heads: int, n_ctx: int, d_vocab: int) -> ModelConfig:
    """nanoGPT's architecture in glassformer's vocabulary (exact GELU, tied, biases, pre-LN, learned positions)."""
    return ModelConfig(arch="decoder", d_model=d_model, n_layers=n_layers, n_heads=n_heads, d_vocab=d_vocab, n_ctx=n_ctx,
                       norm="layernorm", norm_position="pre", positional="learned", act="gelu", tie_embeddings=True,
                       bias=True, dropout=0.0)


@torch.no_grad()
def nanogpt_from_glassformer(model: Transformer) -> GPT:
    """A nanoGPT ``GPT`` holding a copy of ``model``'s weights (a GPT-shaped glassformer decoder)."""
    c = model.config
    gpt = GPT(c.d_vocab, c.n_ctx, c.n_layers, c.n_heads, c.d_model, bias=c.bias)
    gpt.transformer.wte.weight.copy_(model.embed.W_E)
    gpt.transformer.wpe.weight.copy_(model.pos_embed.W_pos)
    for block, ours in zip(gpt.transformer.h, model.blocks):
        a = ours.attn
        W_qkv = torch.cat([w.transpose(0, 1).reshape(c.d_model, -1) for w in (a.W_Q, a.W_K, a.W_V)], dim=1)  # [d, 3d]
        block.attn.c_attn.weight.copy_(W_qkv.T)
        block.attn.c_attn.bias.copy_(torch.cat([a.b_Q.flatten(), a.b_K.flatten(), a.b_V.flatten()]))
        block.attn.c_proj.weight.copy_(a.W_O.reshape(c.d_model, c.d_model).T)
        block.attn.c_proj.bias.copy_(a.b_O)
        block.ln_1.weight.copy_(ours.ln1.w), block.ln_1.bias.copy_(ours.ln1.b)
        block.ln_2.weight.copy_(ours.ln2.w), block.ln_2.bias.copy_(ours.ln2.b)
        block.mlp.c_fc.weight.copy_(ours.mlp.W_in.T), block.mlp.c_fc.bias.copy_(ours.mlp.b_in)
        block.mlp.c_proj.weight.copy_(ours.mlp.W_out.T), block.mlp.c_proj.bias.copy_(ours.mlp.b_out)
    gpt.transformer.ln_f.weight.copy_(model.ln_final.w), gpt.transformer.ln_f.bias.copy_(model.ln_final.b)
    return gpt.train(model.training)


def build_nanogpt_pair(n_layers: int, d_model: int, n_heads: int, n_ctx: int, d_vocab: int, seed: int = 0):
    """(glassformer Transformer, nanoGPT GPT) with the same random weights."""
    torch.manual_seed(seed)
    gf = Transformer(nanogpt_config(n_layers, d_model, n_heads, n_ctx, d_vocab))
    return gf, nanogpt_from_glassformer(gf)


def nanogpt_optimizer(gpt: GPT, lr: float, weight_decay: float = 0.1, betas=(0.9, 0.95)) -> torch.optim.AdamW:
    """nanoGPT's ``configure_optimizers``: decay the >= 2-d tensors, fused AdamW only on CUDA."""
    params = [p for p in gpt.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True if fused else None)

