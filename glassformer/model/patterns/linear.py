"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"): a kernel replaces the softmax.

With the feature map phi(x) = elu(x) + 1 (positive, so every weight is > 0), for query i:

    z_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j)            (j <= i when causal)
        = phi(q_i)^T S_i / phi(q_i)^T u_i,   S_i = sum_j phi(k_j) v_j^T  [d_head, d_head],  u_i = sum_j phi(k_j)

Associativity is the whole trick: S and u do not depend on i (bidirectional) or are prefix sums
(causal), so no [pos, pos] matrix is needed: time O(pos * d_head^2), memory O(pos * d_head + d_head^2).
The causal prefix sums run chunk by chunk (64 positions): inside a chunk the small [64, 64] kernel matrix
is used, between chunks S and u carry the past. A decoder's KV cache is just (S, u), whatever the length:
the model is an RNN. There is no scale (1 / sqrt(d_head)) and no attention dropout. A small eps = 1e-6
keeps the denominator away from 0, as in the paper.

Hooks: ``attn.scores`` holds the kernel values phi(q_i).phi(k_j) (0 where masked) and ``attn.pattern``
the normalised weights they imply, [batch, heads, q_pos, k_pos]; asking for them forms that matrix
(quadratic, for inspection). With a KV cache no past keys are kept, so they cannot be formed: an error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glassformer.errors import InputError
from glassformer.model.attention import Attention, align_padding, attention_mask
from glassformer.model.kv_cache import LayerCache

CHUNK = 64  # positions per chunk of the causal prefix sum
EPS = 1e-6


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 > 0."""
    return F.elu(x) + 1.0


class LinearAttention(Attention):
    """z_i = phi(q_i)^T S_i / phi(q_i)^T u_i, with S, u (prefix) sums over the keys; O(pos)."""

    name = "linear (elu + 1 kernel)"
    softmax_pattern = False

    def scores_tex(self, head: int) -> str:
        eq = r"\mathrm{scores}_{ij} = \phi(q_i) \cdot \phi(k_j), \quad \phi(x) = \mathrm{elu}(x) + 1"
        return eq + (r" \quad (0 \text{ where } j > i)" if self.causal else "")

    def pattern_tex(self) -> str:
        return r"\mathrm{pattern}_{ij} = \frac{\mathrm{scores}_{ij}}{\sum_k \mathrm{scores}_{ik} + \varepsilon}"

    def pattern_text(self) -> str:
        return ("No softmax and no scale: positive kernel values phi(q_i)·phi(k_j), normalised per row (ε = 1e-6). "
                "The model computes z with running sums S = Σ φ(k_j) v_jᵀ, u = Σ φ(k_j) and never forms this matrix; "
                "asking for the pattern forms it, for inspection.")

    def attend(self, q, k, v, *, q_positions, k_positions, key_padding, cache: LayerCache | None) -> torch.Tensor:
        key_padding = align_padding(key_padding, k.shape[1])
        phi_q, phi_k = elu_feature_map(q), elu_feature_map(k)  # [batch, pos, heads or kv_heads, d_head]
        if key_padding is not None:
            phi_k = phi_k * key_padding.to(phi_k.dtype)[:, :, None, None]  # padding keys weigh nothing
        if self.scores.active or self.pattern.active:
            if cache is not None and cache.seen:
                raise InputError(
                    "attention='linear' keeps no past keys in its KV cache (only the sums S and u), so "
                    "attn.scores / attn.pattern cannot be formed: run without the cache to hook them"
                )
            z = self._dense(phi_q, phi_k, v, q_positions, k_positions, key_padding)
            if cache is not None:  # still leave the cache as the recurrent path would
                cache.S, cache.u = self._sums(phi_k, v)
                cache.seen += k.shape[1]
            return z
        batch, n, heads, d_head = q.shape
        phi_q = phi_q.view(batch, n, self.n_kv_heads, heads // self.n_kv_heads, d_head)  # [batch, pos, kv, group, e]
        if not self.causal:
            S, u = self._sums(phi_k, v)
            num = torch.einsum("bikge,bkef->bikgf", phi_q, S)  # [batch, pos, kv, group, d_head]
            den = torch.einsum("bikge,bke->bikg", phi_q, u)
            return (num / (den[..., None] + EPS)).reshape(batch, n, heads, d_head)
        S, u = (cache.S, cache.u) if cache is not None and cache.S is not None else (None, None)
        n_old = k.shape[1] - n  # keys before the first query (a Transformer-XL memory): straight into the sums
        if n_old:
            S, u = self._sums(phi_k[:, :n_old], v[:, :n_old], S, u)
            phi_k, v = phi_k[:, n_old:], v[:, n_old:]
        z, S, u = self._causal_chunks(phi_q, phi_k, v, S, u)
        if cache is not None:
            cache.S, cache.u = S, u
            cache.seen += k.shape[1]
        return z.reshape(batch, n, heads, d_head)

    def _sums(self, phi_k, v, S=None, u=None):
        """S += sum_j phi(k_j) v_j^T  [batch, kv, e, e];  u += sum_j phi(k_j)  [batch, kv, e]."""
        dS = torch.einsum("bjke,bjkf->bkef", phi_k, v)
        du = phi_k.sum(dim=1)
        return (dS, du) if S is None else (S + dS, u + du)

    def _causal_chunks(self, phi_q, phi_k, v, S, u):
        """Causal prefix sums, CHUNK positions at a time. phi_q [batch, pos, kv, group, e]."""
        batch, n, kv, group, d_head = phi_q.shape
        if S is None:
            S = phi_q.new_zeros(batch, kv, d_head, d_head)
            u = phi_q.new_zeros(batch, kv, d_head)
        out = []
        for start in range(0, n, CHUNK):
            qc, kc, vc = phi_q[:, start : start + CHUNK], phi_k[:, start : start + CHUNK], v[:, start : start + CHUNK]
            A = torch.einsum("bikge,bjke->bkgij", qc, kc).tril()  # [batch, kv, group, c, c]: j <= i inside the chunk
            num = torch.einsum("bikge,bkef->bikgf", qc, S) + torch.einsum("bkgij,bjkf->bikgf", A, vc)
            den = torch.einsum("bikge,bke->bikg", qc, u) + A.sum(-1).permute(0, 3, 1, 2)  # [batch, c, kv, group]
            out.append(num / (den[..., None] + EPS))  # [batch, c, kv, group, d_head]
            S, u = self._sums(kc, vc, S, u)
        return torch.cat(out, dim=1), S, u

    def _dense(self, phi_q, phi_k, v, q_positions, k_positions, key_padding) -> torch.Tensor:
        """The same weights as a [q_pos, k_pos] matrix, with hooks on scores (kernel values) and pattern."""
        phi_k, v = self.expand_kv(phi_k), self.expand_kv(v)  # [batch, k_pos, heads, d_head]
        scores = torch.einsum("bqhe,bkhe->bhqk", phi_q, phi_k)  # [batch, heads, q_pos, k_pos] phi(q_i).phi(k_j)
        mask = attention_mask(q_positions, k_positions, self.causal, None)
        if mask is not None:
            scores = scores.masked_fill(~mask, 0.0)
        scores = self.scores(scores)
        pattern = self.pattern(scores / (scores.sum(-1, keepdim=True) + EPS))  # [batch, heads, q_pos, k_pos]
        return torch.einsum("bhqk,bkhe->bqhe", pattern, v)
