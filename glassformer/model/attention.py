"""Multi-head attention, written per head as in the paper (Vaswani et al. 2017, eq. 1 and 2).

For each head h, with x the residual input of the queries and y that of the keys (y = x for
self-attention, y = the encoder output for cross-attention):

    q_h = x W_Q[h] + b_Q[h]                    [pos_q, d_head]
    k_h = y W_K[h] + b_K[h]                    [pos_k, d_head]
    v_h = y W_V[h] + b_V[h]                    [pos_k, d_head]
    scores_h  = scale * q_h k_h^T  (+ bias)    [pos_q, pos_k]   masked entries set to -inf
    pattern_h = softmax(scores_h)  (per row)   [pos_q, pos_k]
    z_h       = pattern_h v_h                  [pos_q, d_head]
    out       = sum_h z_h W_O[h] + b_O         [pos_q, d_model]   (= Concat(z_h) W^O in the paper)

With grouped-query attention several query heads share one key/value head (``n_kv_heads < n_heads``).
With QK-norm, q_h and k_h are normalised over d_head first (``norms.make_qk_norm``); RoPE then rotates
them; ALiBi and T5 add a bias to the scores (``positional.py``).

This class is full softmax attention. The other attention patterns (sliding window, sparse, linear,
Linformer; ``glassformer/model/patterns/``) subclass it and replace one method, :meth:`Attention.attend`
(q, k, v -> z), so the projections, the hooks and the parameter names are the same for all of them.

When no hook asks for ``scores`` or ``pattern``, full attention runs as one fused kernel
(``F.scaled_dot_product_attention``); a test checks the two paths agree. While generating
(:func:`fused_qkv`), q, k and v of self-attention come from one matmul against [W_Q | W_K | W_V].
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from glassformer.model.config import ModelConfig
from glassformer.model.describe import Description
from glassformer.model.hooks import HookPoint
from glassformer.model.init import residual_weight, weight
from glassformer.model.kv_cache import LayerCache
from glassformer.model.norms import make_qk_norm
from glassformer.model.positional import ALiBi, Rotary, T5RelativeBias


def attention_mask(
    q_positions: torch.Tensor, k_positions: torch.Tensor, causal: bool, key_padding: torch.Tensor | None
) -> torch.Tensor | None:
    """Which keys each query may attend to: True = attend.  [batch or 1, 1, q_pos, k_pos], or None (all).

    causal:      key position <= query position (a decoder cannot look ahead)
    key_padding: [batch, k_pos], 1 for real tokens, 0 for padding (nobody attends to padding)
    """
    mask = None
    if causal:
        mask = (k_positions[None, :] <= q_positions[:, None])[None, None]  # [1, 1, q_pos, k_pos]
    if key_padding is not None:
        pad = key_padding.bool()[:, None, None, :]  # [batch, 1, 1, k_pos]
        mask = pad if mask is None else mask & pad
        mask = mask | ~mask.any(-1, keepdim=True)  # a row with nothing to attend to (pure padding) attends all
    return mask


def align_padding(key_padding: torch.Tensor | None, n_keys: int) -> torch.Tensor | None:
    """The padding mask [batch, n_keys] of the last ``n_keys`` key positions.

    ``attention_mask`` columns are the most recent positions, ending at the last query (with a KV cache:
    all positions so far). Keys older than its first column (a Transformer-XL memory) count as real;
    columns older than the oldest key (a sliding-window cache forgot them) are dropped.
    """
    if key_padding is None:
        return None
    have = key_padding.shape[1]
    if have >= n_keys:
        return key_padding[:, have - n_keys :]
    return F.pad(key_padding, (n_keys - have, 0), value=1)


def make_score_bias(config: ModelConfig, causal: bool) -> nn.Module | None:
    """The additive score bias of the positional scheme (ALiBi, T5), or None."""
    if config.positional == "alibi":
        return ALiBi(config.n_heads)
    if config.positional == "t5":
        return T5RelativeBias(config.n_heads, not causal, config.t5_buckets, config.t5_max_distance, config.init_std)
    return None


class Attention(nn.Module):
    """Multi-head (or grouped-query) softmax attention with per-head weights and a hook on every intermediate."""

    def __init__(self, config: ModelConfig, causal: bool, cross: bool = False):
        super().__init__()
        h, kv, d, e = config.n_heads, config.n_kv_heads, config.d_model, config.d_head
        self.n_heads, self.n_kv_heads, self.d_head = h, kv, e
        self.causal, self.cross, self.scale = causal, cross, config.scale
        self.softcap = config.attn_softcap  # Gemma 2: scores = c tanh(scale q k^T / c), before bias and mask
        self.W_Q = weight(config, h, d, e)
        self.W_K = weight(config, kv, d, e)
        self.W_V = weight(config, kv, d, e)
        self.W_O = residual_weight(config, h, e, d)
        if config.bias:
            self.b_Q = nn.Parameter(torch.zeros(h, e))
            self.b_K = nn.Parameter(torch.zeros(kv, e))
            self.b_V = nn.Parameter(torch.zeros(kv, e))
            self.b_O = nn.Parameter(torch.zeros(d))
        else:
            self.b_Q = self.b_K = self.b_V = self.b_O = None
        # optional: computed only while hooked (per-head copies of the input: [batch, pos, heads or kv_heads, d_model])
        self.q_input, self.k_input, self.v_input = HookPoint(optional=True), HookPoint(optional=True), HookPoint(optional=True)
        self.q, self.k, self.v = HookPoint(), HookPoint(), HookPoint()  # [batch, pos, heads, d_head]
        self.q_norm = make_qk_norm(config) if config.qk_norm else None  # hooks: attn.q_norm, attn.q_norm.scale
        self.k_norm = make_qk_norm(config) if config.qk_norm else None
        self.rotary = Rotary(e, config.rope_fraction, config.rope_base) if config.positional == "rope" and not cross else None
        self.score_bias = None if cross else make_score_bias(config, causal)  # ALiBi / T5: [heads, q_pos, k_pos]
        self.dropout = config.dropout
        self.scores, self.pattern = HookPoint(), HookPoint()  # [batch, heads, q_pos, k_pos]
        self.z = HookPoint()  # [batch, q_pos, heads, d_head]
        self.result = HookPoint(optional=True)  # [batch, q_pos, heads, d_model]: z_h W_O[h], only while hooked
        self.W_QKV: tuple[torch.Tensor, torch.Tensor | None] | None = None  # set only inside fused_qkv()

    @staticmethod
    def _project(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """x W[h] + b[h] for every head h: [batch, pos, d_model] -> [batch, pos, heads, d_head].

        The same as ``einsum("bpd,hde->bphe", x, W)``, written as one matmul broadcast over heads: on a CPU,
        einsum copies the permuted weight on every call, which dominated a KV-cache decoding step."""
        batch, pos, d_model = x.shape
        out = torch.matmul(x.reshape(1, batch * pos, d_model), W)  # [heads, batch * pos, d_head]
        out = out.transpose(0, 1).reshape(batch, pos, W.shape[0], W.shape[2])  # [batch, pos, heads, d_head]
        return out + b if b is not None else out

    def forward(
        self,
        x: torch.Tensor,  # [batch, q_pos, d_model]
        memory: torch.Tensor | None = None,  # [batch, k_pos, d_model] (cross-attention: encoder output)
        *,
        positions: torch.Tensor,  # [q_pos] absolute positions of the queries
        key_padding: torch.Tensor | None = None,  # [batch, k_pos] 1 = real
        cache: LayerCache | None = None,
        prefix: torch.Tensor | None = None,  # [batch, mem_pos, d_model] Transformer-XL memory: extra keys/values
    ) -> torch.Tensor:
        if self.cross:
            q = self._queries(self._split_project(x, self.q_input, self.W_Q, self.b_Q), positions)  # [batch, q_pos, heads, d_head]
            z = self._cross_attend(q, memory, positions, key_padding, cache)
        else:
            y, k_positions = x, positions  # the keys of this call are the queries' own positions ...
            if prefix is not None:  # ... preceded by a Transformer-XL memory's
                y = torch.cat([prefix, x], dim=1)  # [batch, k_pos, d_model]
                k_positions = torch.arange(positions[0] - prefix.shape[1], positions[-1] + 1, device=x.device)
            q, k, v, rotated = self._project_qkv(x, y, positions)
            q = self._queries(q, positions, rotated)  # [batch, q_pos, heads, d_head]
            k, v = self._keys_values(k, v, k_positions, rotated)  # [batch, k_pos, kv_heads, d_head]
            z = self.attend(q, k, v, q_positions=positions, k_positions=k_positions, key_padding=key_padding, cache=cache)
        z = self.z(z)  # [batch, q_pos, heads, d_head]
        if self.result.fns:  # each head's write into the residual stream, built only when watched
            result = self.result(torch.einsum("bqhe,hed->bqhd", z, self.W_O))  # [batch, q_pos, heads, d_model]
            return result.sum(2) + self.b_O if self.b_O is not None else result.sum(2)  # [batch, q_pos, d_model]
        batch, q_pos, heads, d_head = z.shape  # sum_h z_h W_O[h] = Concat_h(z_h) W^O
        W_O = self.W_O.reshape(heads * d_head, -1)  # [heads * d_head, d_model]
        return F.linear(z.reshape(batch, q_pos, heads * d_head), W_O.T, self.b_O)  # [batch, q_pos, d_model]

    def _project_qkv(self, x: torch.Tensor, y: torch.Tensor, positions: torch.Tensor):
        """q = x W_Q + b_Q [batch, q_pos, heads, d_head]; k = y W_K + b_K, v = y W_V + b_V [batch, k_pos, kv_heads, d_head].

        For self-attention (y = x) the three are one matmul against [W_Q | W_K | W_V]: the same equations, one
        GEMM instead of three per-head batched ones and their copies (bench/README.md). The concatenation is
        rebuilt from the parameters on every call (so gradients reach W_Q, W_K, W_V), except inside
        :func:`fused_qkv` (generation), which makes it once. While a per-head input (``q_input``, ``k_input``,
        ``v_input``) is hooked, or with a Transformer-XL memory (the keys also read the memory's positions),
        each projection is made on its own.

        Returns q, k, v and whether RoPE is already applied: with nothing hooked on q or k and no QK-norm, q and k
        are rotated together, as one view [batch, pos, heads + kv_heads, d_head] of the fused output (one set of
        rotation ops instead of two; the same numbers)."""
        split = self.q_input.fns or self.k_input.fns or self.v_input.fns
        if split:
            return (self._split_project(x, self.q_input, self.W_Q, self.b_Q), self._split_project(y, self.k_input, self.W_K, self.b_K),
                    self._split_project(y, self.v_input, self.W_V, self.b_V), False)
        if y is not x:
            return (self._project(x, self.W_Q, self.b_Q), self._project(y, self.W_K, self.b_K), self._project(y, self.W_V, self.b_V),
                    False)
        if self.W_QKV is not None and not torch.is_grad_enabled():  # the copy fused_qkv made carries no gradient
            W, b = self.W_QKV  # [d_model, (heads + 2 kv_heads) * d_head], [(heads + 2 kv_heads) * d_head]
        else:
            W, b = self.fused_qkv_weights(detach=False)
        qkv = F.linear(x, W.T, b)  # [batch, pos, (heads + 2 kv_heads) * d_head]
        (batch, pos, _), h, kv, e = x.shape, self.n_heads, self.n_kv_heads, self.d_head
        qkv = qkv.view(batch, pos, h + 2 * kv, e)
        if self.rotary is not None and self.q_norm is None and not (self.q.fns or self.k.fns):
            qk = self.rotary(qkv[:, :, : h + kv], positions)  # [batch, pos, heads + kv_heads, d_head], rotated
            q, k = qk.split_with_sizes([h, kv], dim=2)
            return q, k, qkv[:, :, h + kv :], True
        q, k, v = qkv.split_with_sizes([h, kv, kv], dim=2)
        return q, k, v, False  # views of qkv: [batch, pos, heads | kv_heads | kv_heads, d_head]

    def _split_project(self, x: torch.Tensor, point: HookPoint, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """x W + b for every head ([batch, pos, heads, d_head]). While the optional hook ``point``
        (``q_input``, ``k_input``, ``v_input``) is watched, each head gets its own copy of x first, so it can be
        patched per head: x_h [batch, pos, heads, d_model] -> x_h[:, :, h] W[h] + b[h] (TransformerLens's
        use_split_qkv_input)."""
        if not point.fns:
            return self._project(x, W, b)
        x_h = point(x[:, :, None].expand(-1, -1, W.shape[0], -1).clone())  # [batch, pos, heads, d_model]
        out = torch.einsum("bphd,hde->bphe", x_h, W)  # [batch, pos, heads, d_head]
        return out + b if b is not None else out

    def fused_qkv_weights(self, detach: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[W_Q | W_K | W_V] as one [d_model, (heads + 2 kv_heads) * d_head] matrix, and [b_Q | b_K | b_V]."""
        W = torch.cat([self.W_Q, self.W_K, self.W_V], dim=0)  # [heads + 2 kv_heads, d_model, d_head]
        W = W.transpose(0, 1).reshape(W.shape[1], -1)  # [d_model, (heads + 2 kv_heads) * d_head]
        b = None if self.b_Q is None else torch.cat([self.b_Q, self.b_K, self.b_V]).flatten()
        return (W.detach(), None if b is None else b.detach()) if detach else (W, b)

    def _queries(self, q: torch.Tensor, positions: torch.Tensor, rotated: bool = False) -> torch.Tensor:
        """Hook q, then QK-norm and RoPE (unless ``rotated`` already): [batch, q_pos, heads, d_head]."""
        q = self.q(q)
        if self.q_norm is not None:
            q = self.q_norm(q)
        return self.rotary(q, positions) if self.rotary is not None and not rotated else q

    def _keys_values(self, k, v, k_positions: torch.Tensor | None, rotated: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Hook k and v, then QK-norm and RoPE on k (unless ``rotated`` already): [batch, k_pos, kv_heads, d_head]."""
        k, v = self.k(k), self.v(v)
        if self.k_norm is not None:
            k = self.k_norm(k)
        if self.rotary is not None and not rotated:
            k = self.rotary(k, k_positions)
        return k, v

    def expand_kv(self, t: torch.Tensor) -> torch.Tensor:
        """Grouped-query attention: kv head g serves query heads g*r .. g*r + r - 1 (r = n_heads / n_kv_heads).
        [batch, pos, kv_heads, d_head] -> [batch, pos, heads, d_head]."""
        if self.n_kv_heads == self.n_heads:
            return t
        return t.repeat_interleave(self.n_heads // self.n_kv_heads, dim=2)

    # -- q, k, v -> z: the part an attention pattern replaces ------------------------------------------

    def attend(
        self,
        q: torch.Tensor,  # [batch, q_pos, heads, d_head]
        k: torch.Tensor,  # [batch, new_k_pos, kv_heads, d_head] keys of this call (memory prefix included)
        v: torch.Tensor,  # [batch, new_k_pos, kv_heads, d_head]
        *,
        q_positions: torch.Tensor,  # [q_pos]
        k_positions: torch.Tensor,  # [new_k_pos]
        key_padding: torch.Tensor | None,  # [batch, >= some k_pos] 1 = real (see align_padding)
        cache: LayerCache | None,
    ) -> torch.Tensor:
        """Full softmax attention over every allowed key: z [batch, q_pos, heads, d_head]."""
        if cache is not None:
            k, v, first = cache.append(k, v)  # every key so far
            k_positions = torch.arange(first, cache.seen, device=q.device)
        key_padding = align_padding(key_padding, k.shape[1])
        bias = self.score_bias(q_positions, k_positions) if self.score_bias is not None else None  # [heads, q, k]
        # the queries are the newest positions, so a single one (a cached decoding step) may see every key
        causal = self.causal and q.shape[1] > 1
        mask = attention_mask(q_positions, k_positions, causal, key_padding)
        plain_causal = self.causal and key_padding is None and q.shape[1] == k.shape[1]
        return self.softmax_attention(q, self.expand_kv(k), self.expand_kv(v), bias, mask, plain_causal)

    def _cross_attend(self, q, memory, positions, key_padding, cache) -> torch.Tensor:
        if cache is not None and cache.cross_k is not None:
            k, v = cache.cross_k, cache.cross_v  # the encoder output does not change while decoding
        else:
            k = self._split_project(memory, self.k_input, self.W_K, self.b_K)  # [batch, src_pos, kv_heads, d_head]
            k, v = self._keys_values(k, self._split_project(memory, self.v_input, self.W_V, self.b_V), None)
            if cache is not None:
                cache.cross_k, cache.cross_v = k, v
        mask = attention_mask(positions, torch.arange(k.shape[1], device=q.device), False, key_padding)
        return self.softmax_attention(q, self.expand_kv(k), self.expand_kv(v), None, mask, plain_causal=False)

    def cap(self, scores: torch.Tensor) -> torch.Tensor:
        """Attention logit soft-capping (Gemma 2): c tanh(scores / c), which keeps every score in (-c, c); the
        identity without ``attn_softcap``."""
        return scores if self.softcap is None else self.softcap * torch.tanh(scores / self.softcap)

    def softmax_attention(self, q, k, v, bias, mask, plain_causal: bool) -> torch.Tensor:
        """softmax(scale q k^T + bias, masked) v, explicitly when a hook watches scores/pattern (or the scores are
        soft-capped, which the fused kernel cannot do), else fused."""
        if self.scores.active or self.pattern.active or self.softcap is not None:
            return self._explicit(q, k, v, bias, mask)
        return self._fused(q, k, v, bias, mask, plain_causal)

    def _explicit(self, q, k, v, bias, mask) -> torch.Tensor:
        """The equations one by one, head by head, with hooks on scores and pattern.

        q[:, :, h], k[:, :, h], v[:, :, h] are strided views of the projection, and each head's product is
        written into its slice of one result, so no [batch, heads, pos, d_head] copy of q, k or v is made
        and scale, bias and mask act in place: a ``run_with_cache`` of every hook keeps only what it stores
        (an einsum would copy q, k and v into head-major order and leave freed blocks between the cached
        tensors; bench/results/lens_cache.md)."""
        batch, q_pos, heads, d_head = q.shape
        scores = q.new_empty(batch, heads, q_pos, k.shape[1])  # [batch, heads, q_pos, k_pos]
        for h in range(heads):
            scores[:, h] = q[:, :, h] @ k[:, :, h].transpose(1, 2)  # q_h k_h^T  [batch, q_pos, k_pos]
        scores = self.cap(scores.mul_(self.scale))  # soft-capped (Gemma 2): c tanh(. / c), a fresh tensor
        if bias is not None:
            scores.add_(bias)
        if mask is not None:
            scores.masked_fill_(~mask, float("-inf"))
        scores = self.scores(scores)
        pattern = self.pattern(torch.softmax(scores, dim=-1))  # [batch, heads, q_pos, k_pos]
        pattern = F.dropout(pattern, self.dropout, self.training)
        z = q.new_empty(batch, q_pos, heads, d_head)  # [batch, q_pos, heads, d_head]
        for h in range(heads):
            z[:, :, h] = pattern[:, h] @ v[:, :, h]  # z_h = pattern_h v_h  [batch, q_pos, d_head]
        return z

    def _fused(self, q, k, v, bias, mask, plain_causal: bool) -> torch.Tensor:
        """The same computation as ``_explicit`` in one kernel (flash / memory-efficient attention).
        A plain causal mask is passed as ``is_causal`` so the kernel never materialises it."""
        if bias is not None:
            attn_mask = (bias if mask is None else bias.masked_fill(~mask, float("-inf"))).to(q.dtype)
        else:
            attn_mask = None if plain_causal else mask
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),  # [batch, heads, pos, d_head]
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=plain_causal and bias is None,
            scale=self.scale,
        )
        return z.transpose(1, 2)  # [batch, q_pos, heads, d_head]

    # -- what this attention is, for the tools (explain, diagram, lens) -------------------------------

    key_axis = "positions"  # what the last axis of attn.pattern indexes (Linformer: projected slots)
    softmax_pattern = True  # the pattern is a softmax of the scores (linear attention: normalised kernel values)
    name = "attention"  # the pattern's name in titles ("sliding-window attention", ...)

    def allowed_tex(self) -> str | None:
        """The condition on (query i, key j) under which a key is seen, in LaTeX; None = every key."""
        return r"j \le i" if self.causal and not self.cross else None

    def scores_tex(self, head: int) -> str:
        """scores_h = scale q k^T (+ the positional bias), masked outside :meth:`allowed_tex`."""
        scale = r"\frac{1}{\sqrt{d_{\mathrm{head}}}}" if abs(self.scale * self.d_head**0.5 - 1) < 1e-12 else f"{self.scale:.4g}"
        qk = rf"{scale}\, q k^\top" if self.softcap is None else rf"{self.softcap:g} \tanh({scale}\, q k^\top / {self.softcap:g})"
        eq = rf"\mathrm{{scores}} = {qk}" + getattr(self.score_bias, "score_term", "").replace("_h", f"_{{{head}}}")
        allowed = self.allowed_tex()
        return eq + (rf" \quad (-\infty \text{{ unless }} {allowed})" if allowed else "")

    def pattern_tex(self) -> str:
        return r"\mathrm{pattern}_{ij} = \frac{\exp(s_{ij} - \max_k s_{ik})}{\sum_{k} \exp(s_{ik} - \max_k s_{ik})}"

    def describe(self) -> Description:
        kind = "Cross-attention" if self.cross else ("Masked self-attention" if self.causal else "Self-attention")
        title = kind if self.name == "attention" else f"{kind}: {self.name}"
        heads = f"{self.n_heads} heads × d_head={self.d_head}"
        if self.n_kv_heads != self.n_heads:
            heads += f", {self.n_kv_heads} kv heads"
        equations = (r"q = x W_Q + b_Q, \quad k = y W_K + b_K, \quad v = y W_V + b_V", self.scores_tex(0).replace("_{0}", "_h"),
                     self.pattern_tex(), r"z = \mathrm{pattern}\; v", r"\mathrm{out} = \sum_h z_h W_O^h + b_O")
        return Description(title, equations, self.pattern_text(), heads)

    def pattern_text(self) -> str:
        """One sentence: which keys each query sees and how they are weighed."""
        if self.cross:
            return "Every decoder position attends to every source position (the encoder's output)."
        return ("Softmax over the query's own and earlier positions (the causal mask sets later keys to -inf)."
                if self.causal else "Softmax over every position, before and after the query.")


@contextlib.contextmanager
def fused_qkv(model: nn.Module) -> Iterator[None]:
    """Inside this block every self-attention of ``model`` projects q, k and v with one matmul against
    [W_Q | W_K | W_V], concatenated once on entry, instead of three batched per-head matmuls.

    The same equations; only the float rounding order may differ. Worth it where one call projects few
    positions many times over (a KV-cache decoding step: 10-15% faster on a CPU, measured). The copy is made
    on entry (it holds the Q, K, V weights a second time while the block runs), so the weights must not change
    inside the block; it is used only while gradients are off. ``generate`` uses it.
    """
    layers = [m for m in model.modules() if isinstance(m, Attention) and not m.cross and m.W_QKV is None]
    try:
        with torch.no_grad():
            for attn in layers:
                attn.W_QKV = attn.fused_qkv_weights()
        yield
    finally:
        for attn in layers:
            attn.W_QKV = None
