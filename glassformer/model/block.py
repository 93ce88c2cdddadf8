"""One transformer layer: attention (and, in an encoder-decoder's decoder, cross-attention), then an MLP,
each wrapped in a residual connection with a norm placed as the config says.

    Pre-LN  (norm_position="pre"):   x = x + Sublayer(Norm(x))
    Post-LN (norm_position="post"):  x = Norm(x + Sublayer(x))      (the paper's Figure 1)
    Parallel (parallel_residual):    x = x + Attn(Norm1(x)) + MLP(Norm2(x))   (GPT-J, GPT-NeoX / Pythia: both
                                     sublayers read the block's input; resid_mid = x + Attn(Norm1(x)) for hooks)
    Sandwich (sandwich_norm):        x = x + Norm_post(Sublayer(Norm(x)))     (Gemma 2 / 3: ``ln1_post``, ``ln2_post``;
                                     attn_out and mlp_out are the normed outputs, what the stream adds)

The self-attention is the pattern ``config.attention`` asks for (``patterns/``). With a Transformer-XL
memory (``segment_memory.py``) the self-attention also reads the memory's states as extra keys/values,
then stores this segment's attention input in it.

Hook points, in forward order: resid_pre, ln1, attn.*, attn_out, resid_mid, [ln_cross, cross_attn.*,
cross_attn_out, resid_mid_cross], ln2, mlp.pre, mlp.post, mlp_out, resid_post.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from glassformer.model.attention import Attention
from glassformer.model.config import ModelConfig
from glassformer.model.hooks import HookPoint
from glassformer.model.kv_cache import LayerCache
from glassformer.model.mlp import make_mlp
from glassformer.model.norms import RESIDUAL_RULES, make_norm
from glassformer.model.patterns import make_attention
from glassformer.model.segment_memory import LayerMemory


def make_dropout(p: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Dropout with probability p; at p = 0 a plain identity function (a module call costs ~1 us per use,
    which adds up in a decoding step). So a model built with dropout = 0 has no ``nn.Dropout`` modules to
    switch on later: to fine-tune with dropout, build it with ``ModelConfig(dropout=p)`` and load the weights."""
    return nn.Dropout(p) if p > 0 else _identity


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class Block(nn.Module):
    def __init__(self, config: ModelConfig, causal: bool, cross_attention: bool = False):
        super().__init__()
        self.residual = RESIDUAL_RULES[config.norm_position]  # pre_norm_residual or post_norm_residual
        self.drop = make_dropout(config.dropout)
        self.resid_pre = HookPoint()  # [batch, pos, d_model]
        self.ln1 = make_norm(config)
        self.attn = make_attention(config, causal=causal)
        self.attn_out = HookPoint()
        self.resid_mid = HookPoint()
        if cross_attention:
            self.ln_cross = make_norm(config)
            self.cross_attn = Attention(config, causal=False, cross=True)
            self.cross_attn_out = HookPoint()
            self.resid_mid_cross = HookPoint()
        else:
            self.cross_attn = None
        if not config.attn_only:
            self.ln2 = make_norm(config)
        self.mlp = make_mlp(config)
        if self.mlp is not None:
            self.mlp_out = HookPoint()
        self.resid_post = HookPoint()
        self.parallel = config.parallel_residual
        post = config.sandwich_norm  # Gemma 2: a norm on each sublayer's output too
        self.ln1_post = make_norm(config) if post else None
        self.ln2_post = make_norm(config) if post and self.mlp is not None else None

    def forward(
        self,
        x: torch.Tensor,  # [batch, pos, d_model]
        *,
        positions: torch.Tensor,  # [pos]
        attention_mask: torch.Tensor | None = None,  # [batch, k_pos] 1 = real token
        memory: torch.Tensor | None = None,  # [batch, src_pos, d_model] encoder output (cross-attention)
        memory_mask: torch.Tensor | None = None,  # [batch, src_pos]
        cache: LayerCache | None = None,
        segment: LayerMemory | None = None,  # Transformer-XL: this layer's memory (updated here)
        read_segment: bool = True,  # False once a KV cache already holds the memory's keys
    ) -> torch.Tensor:
        x = self.resid_pre(x)

        def self_attention(h):
            prefix = segment.states if segment is not None and read_segment else None  # [batch, mem, d_model]
            out = self.attn(h, positions=positions, key_padding=attention_mask, cache=cache, prefix=prefix)
            if segment is not None:
                segment.update(h)
            return self.attn_out(self.drop(out if self.ln1_post is None else self.ln1_post(out)))

        if self.parallel:  # both sublayers read the block's input x
            mlp_out = self.mlp_out(self.drop(self.mlp(self.ln2(x))))  # [batch, pos, d_model]
            return self.resid_post(self.resid_mid(x + self_attention(self.ln1(x))) + mlp_out)
        x = self.resid_mid(self.residual(x, self.ln1, self_attention))
        if self.cross_attn is not None:

            def cross_attention(h):
                out = self.cross_attn(h, memory, positions=positions, key_padding=memory_mask, cache=cache)
                return self.cross_attn_out(self.drop(out))

            x = self.resid_mid_cross(self.residual(x, self.ln_cross, cross_attention))
        if self.mlp is not None:
            x = self.residual(x, self.ln2, lambda h: self.mlp_out(self.drop(self._mlp_post(self.mlp(h)))))
        return self.resid_post(x)  # [batch, pos, d_model]

    def _mlp_post(self, out: torch.Tensor) -> torch.Tensor:
        return out if self.ln2_post is None else self.ln2_post(out)  # [batch, pos, d_model]
