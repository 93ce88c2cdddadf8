"""Linformer attention (Wang et al. 2020, "Linformer: Self-Attention with Linear Complexity").

Keys and values are projected along the sequence axis, from pos positions down to k = ``linformer_k``
slots, by learned matrices E and F [k, n_ctx] (shared by the heads of a layer: the paper's
"headwise" sharing):

    K'_h = E[:, :pos] K_h          [k, d_head]      each slot is a learned mix of all positions
    V'_h = F[:, :pos] V_h          [k, d_head]
    z_h  = softmax(scale * Q_h K'_h^T) V'_h          pattern [pos, k]

Time and memory O(pos * k) instead of O(pos^2). Using the first pos columns of E and F is the same
as zero-padding the sequence to n_ctx. Because every slot mixes every position, a query could read the
future: Linformer is bidirectional only (``arch="encoder"``, checked by the config). Padding keys and
values are zeroed before the projection.

Hooks: ``attn.scores`` and ``attn.pattern`` are [batch, heads, q_pos, linformer_k]: the last axis is
the projected slots, not positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glassformer.errors import InputError
from glassformer.model.attention import Attention, align_padding
from glassformer.model.config import ModelConfig
from glassformer.model.init import normal
from glassformer.model.kv_cache import LayerCache


class LinformerAttention(Attention):
    """softmax(scale * Q (E K)^T) (F V): attention over linformer_k projected slots, O(pos * k)."""

    def __init__(self, config: ModelConfig, causal: bool):
        super().__init__(config, causal)
        self.n_ctx = config.n_ctx
        # E, F ~ N(0, 1 / k): the paper's random (Johnson-Lindenstrauss) projection as the starting point
        self.E = normal(config.linformer_k, config.n_ctx, std=config.linformer_k**-0.5)  # keys:   [k, n_ctx]
        self.F = normal(config.linformer_k, config.n_ctx, std=config.linformer_k**-0.5)  # values: [k, n_ctx]

    key_axis = "slots"  # attn.pattern is [.., q_pos, linformer_k]: its keys are learned mixes of all positions
    name = "Linformer"

    def project_keys_values(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K' = E[:, :pos] K, V' = F[:, :pos] V: [batch, pos, kv_heads, d_head] -> [batch, linformer_k, kv_heads, d_head]."""
        n = k.shape[1]
        return torch.einsum("sn,bnhe->bshe", self.E[:, :n], k), torch.einsum("sn,bnhe->bshe", self.F[:, :n], v)

    def projection_tex(self) -> str:
        return r"k' = E_{[:, :n]}\, k, \quad v' = F_{[:, :n]}\, v"

    def allowed_tex(self) -> None:
        return None

    def scores_tex(self, head: int) -> str:
        return super().scores_tex(head).replace(r"q k^\top", r"q k'^\top")

    def pattern_text(self) -> str:
        return (f"Softmax over {self.E.shape[0]} projected slots, not positions: slot s holds the mix Σ_j E[s, j] k_j of all "
                "positions, so a pattern entry does not say which position a query reads.")

    def attend(self, q, k, v, *, q_positions, k_positions, key_padding, cache: LayerCache | None) -> torch.Tensor:
        n = k.shape[1]
        if cache is not None:
            raise InputError("attention='linformer' is bidirectional: it has no KV cache")
        if n > self.n_ctx:
            raise InputError(f"attention='linformer' projects at most n_ctx = {self.n_ctx} positions, got {n}")
        key_padding = align_padding(key_padding, n)
        if key_padding is not None:
            real = key_padding.to(k.dtype)[:, :, None, None]  # [batch, pos, 1, 1]
            k, v = k * real, v * real
        k_proj = torch.einsum("sn,bnhe->bshe", self.E[:, :n], k)  # [batch, linformer_k, kv_heads, d_head]
        v_proj = torch.einsum("sn,bnhe->bshe", self.F[:, :n], v)
        k_proj, v_proj = self.expand_kv(k_proj), self.expand_kv(v_proj)  # [batch, linformer_k, heads, d_head]
        scores = self.scores(torch.einsum("bqhe,bshe->bhqs", q, k_proj) * self.scale)  # [batch, heads, q_pos, k]
        pattern = self.pattern(torch.softmax(scores, dim=-1))  # [batch, heads, q_pos, linformer_k]
        pattern = F.dropout(pattern, self.dropout, self.training)
        return torch.einsum("bhqs,bshe->bqhe", pattern, v_proj)  # [batch, q_pos, heads, d_head]
