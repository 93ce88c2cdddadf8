"""The lean decoding step: one new token through a plain decoder, from a static key/value cache.

``generate`` uses it while no hook is attached (hooks need the general forward, which it then runs).
It computes the same equations as ``Transformer.forward`` with a ``KVCache`` (block.py, attention.py), for
the positions p .. p + n - 1 of a sequence whose earlier keys and values are cached:

    x      = W_E[t] + W_pos[p]                                   (embed_tokens, as the forward)     [batch, n, d_model]
    for each block (pre-LN; post-LN, sandwich norms and parallel residuals as block.py):
        h        = Norm1(x)
        q, k, v  = h [W_Q | W_K | W_V] + [b_Q | b_K | b_V]       one matmul, fused once per generate call
        q, k     = RoPE(QK-norm(q), p), RoPE(QK-norm(k), p)      when the config has them
        K[p:p+n], V[p:p+n] = k, v                                 written into a preallocated [batch, kv_heads, n_ctx, d_head]
        z        = softmax(scale q K[:p+n]^T (causal)) V[:p+n]   a single query sees every cached key: no mask
        x        = x + z W_O + b_O
        x        = x + MLP(Norm2(x))                             (the block's own MLP and norm modules)
    logits = Norm_final(x[:, -1]) W_U + b_U                     only the last position              [batch, d_vocab_out]

What it leaves out is what a one-token step does not need: the per-call input checks, the hook dispatch of the
attention and the blocks, the mask (one query may see every key it has), a cache that grows by copying, and
the per-head reshapes of the general attention. Past ``n_ctx`` positions a model with relative (or no)
positions keeps decoding from the same buffer used as a ring: position p writes slot p mod n_ctx, so the
kept keys are the last n_ctx (the rolling cache of ``generate.py``; attention over a set of keys does not
depend on their order, and each key was rotated by its own position when it was made).

:func:`lean_decoding_unsupported` says which models it takes: a decoder with full softmax attention, learned /
sinusoidal / RoPE / no positions, without score biases (ALiBi, T5), Transformer-XL memory, patches or an MLM
head; ``generate`` runs the general forward for everything else, and for left-padded batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glassformer.model.attention import Attention
from glassformer.model.hooks import HookPoint
from glassformer.model.transformer import embed_tokens


def lean_decoding_unsupported(model) -> str | None:
    """Why ``model`` cannot decode through :class:`LeanDecoder` (None: it can)."""
    c = model.config
    if c.arch != "decoder" or c.input != "tokens":
        return f"arch {c.arch!r} / input {c.input!r}"
    if c.memory_len:
        return "Transformer-XL memory"
    if c.positional not in ("learned", "sinusoidal", "rope", "none"):
        return f"positional {c.positional!r} adds a score bias"
    if c.unembed_transform or c.n_classes:
        return "an MLM head or a classifier"
    if getattr(c, "attn_softcap", None) is not None:
        return "attention soft-capping"
    if any(type(block.attn) is not Attention for block in model.blocks):
        return f"attention pattern {c.attention!r}"
    return None


def hooks_attached(model) -> bool:
    """Whether any hook point of ``model`` has a hook function attached."""
    return any(m.fns for m in model.modules() if isinstance(m, HookPoint))


class LeanDecoder:
    """A static KV cache for ``batch`` rows and the decoding step over it (see the module docstring).

    Built inside ``generate`` (weights frozen, gradients off): the fused [W_Q | W_K | W_V] and W_O^T are made
    once here, in the layout ``F.linear`` reads (the same numbers as the parameters)."""

    def __init__(self, model, batch: int):
        self.model, self.config = model, model.config
        c = model.config
        self.n_ctx = c.n_ctx
        self.rolls = c.positional in ("rope", "none")  # relative (or no) positions: the ring buffer may wrap
        self.layers = []
        like = next(model.parameters())
        for block in model.blocks:
            attn = block.attn
            W, b = attn.fused_qkv_weights()  # [d_model, (heads + 2 kv_heads) * d_head]
            W_O = attn.W_O.detach().reshape(attn.n_heads * attn.d_head, -1)  # [heads * d_head, d_model]
            cache = like.new_empty(2, batch, attn.n_kv_heads, c.n_ctx, attn.d_head)  # K and V [batch, kv_heads, n_ctx, d_head]
            b_O = None if attn.b_O is None else attn.b_O.detach()
            self.layers.append((block, attn, W.T.contiguous(), b, W_O.T.contiguous(), b_O, cache))
        self.seen = 0  # positions written so far

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits after the new ``tokens`` [batch, n] (positions seen .. seen + n - 1): [batch, d_vocab_out]."""
        model, n, p = self.model, tokens.shape[1], self.seen
        if (n > 1 and p > 0) or (p + n > self.n_ctx and not self.rolls):  # generate never asks for these
            raise ValueError(f"LeanDecoder takes a prompt of <= n_ctx tokens first, then one token per step (got {n} at {p})")
        positions = torch.arange(p, p + n, device=tokens.device)  # [n]
        x = embed_tokens(model, tokens, positions)  # [batch, n, d_model]
        for block, attn, W_qkv, b_qkv, W_O, b_O, cache in self.layers:
            if block.parallel:  # x + Attn(Norm1(x)) + MLP(Norm2(x))
                x = x + self._attention(attn, block.ln1(x), positions, W_qkv, b_qkv, W_O, b_O, cache) + block.mlp(block.ln2(x))
                continue
            x = block.residual(x, block.ln1, lambda h: post(block, "ln1_post", self._attention(attn, h, positions, W_qkv, b_qkv, W_O, b_O, cache)))
            if block.mlp is not None:
                x = block.residual(x, block.ln2, lambda h: post(block, "ln2_post", block.mlp(h)))  # [batch, n, d_model]
        self.seen = p + n
        return model.unembed(model.ln_final(x[:, -1]))  # [batch, d_vocab_out]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` of the cache (beam search follows each surviving beam)."""
        self.layers = [(*layer[:-1], layer[-1].index_select(1, index)) for layer in self.layers]

    def _attention(self, attn: Attention, h, positions, W_qkv, b_qkv, W_O, b_O, cache) -> torch.Tensor:
        """Self-attention of the new positions over every cached one: [batch, n, d_model]."""
        batch, n, _ = h.shape
        heads, kv, e = attn.n_heads, attn.n_kv_heads, attn.d_head
        qkv = F.linear(h, W_qkv, b_qkv).view(batch, n, heads + 2 * kv, e)  # [batch, n, heads + 2 kv_heads, d_head]
        q, k, v = qkv.split_with_sizes([heads, kv, kv], dim=2)
        if attn.q_norm is not None:
            q, k = attn.q_norm(q), attn.k_norm(k)
            if attn.rotary is not None:
                q, k = attn.rotary(q, positions), attn.rotary(k, positions)
        elif attn.rotary is not None:  # q and k rotated together: one view of qkv
            q, k = attn.rotary(qkv[:, :, : heads + kv], positions).split_with_sizes([heads, kv], dim=2)
        p = self.seen
        slot = p % self.n_ctx
        cache[0, :, :, slot : slot + n] = k.transpose(1, 2)  # [batch, kv_heads, n, d_head]
        cache[1, :, :, slot : slot + n] = v.transpose(1, 2)
        keys, values = cache[0, :, :, : min(p + n, self.n_ctx)], cache[1, :, :, : min(p + n, self.n_ctx)]  # [batch, kv, k_pos, e]
        if n == 1:  # one query sees every kept key: scores [batch, kv_heads, heads / kv_heads, k_pos]
            q = q.reshape(batch, kv, heads // kv, e)  # query heads grouped by the kv head they share
            pattern = torch.softmax(torch.matmul(q, keys.transpose(-1, -2)) * attn.scale, dim=-1)
            z = torch.matmul(pattern, values).reshape(batch, 1, heads * e)  # [batch, 1, heads * d_head]
        else:  # the prompt (at position 0): causal attention over itself
            r = heads // kv
            keys, values = keys.repeat_interleave(r, dim=1), values.repeat_interleave(r, dim=1)  # [batch, heads, n, e]
            z = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, is_causal=True, scale=attn.scale)
            z = z.transpose(1, 2).reshape(batch, n, heads * e)  # [batch, n, heads * d_head]
        return F.linear(z, W_O, b_O)  # [batch, n, d_model]


def post(block, name: str, out: torch.Tensor) -> torch.Tensor:
    """A sandwich norm on a sublayer's output (Gemma 2's ``ln1_post`` / ``ln2_post``), where the block has one."""
    norm = getattr(block, name, None)
    return out if norm is None else norm(out)
