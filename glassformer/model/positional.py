"""Positional schemes that act inside attention rather than on the residual stream.

* RoPE (Su et al. 2021, "RoFormer"): rotate each (query, key) pair of dimensions by an angle
  proportional to the position, so that q_i . k_j depends on positions only through i - j.
* ALiBi (Press et al. 2022, "Train Short, Test Long"): add -m_h * |i - j| to head h's scores, with a
  fixed geometric slope m_h per head; no position enters the residual stream at all.
"""

from __future__ import annotations

import torch
from torch import nn


class Rotary(nn.Module):
    """RoPE on the first ``d_rot`` dimensions of each head (``d_rot = rope_fraction * d_head``).

    For position p and frequency theta_i = base^(-2i / d_rot), dimensions (x_i, x_{i + d_rot/2}) are
    rotated by the angle p * theta_i:

        x_i'          = x_i cos(p theta_i) - x_{i+d_rot/2} sin(p theta_i)
        x_{i+d_rot/2}' = x_i sin(p theta_i) + x_{i+d_rot/2} cos(p theta_i)

    The paper pairs neighbouring dimensions (2i, 2i+1); pairing i with i + d_rot/2 (GPT-NeoX, Llama) is
    the same rotation after a fixed permutation of W_Q's and W_K's columns, and is what Hugging Face uses.
    """

    def __init__(self, d_head: int, fraction: float = 1.0, base: float = 10000.0):
        super().__init__()
        self.d_rot = int(d_head * fraction)
        inv_freq = base ** (-torch.arange(0, self.d_rot, 2, dtype=torch.float64) / self.d_rot)  # [d_rot / 2]
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x [batch, pos, heads, d_head], positions [pos] -> x rotated, same shape."""
        angles = positions.float()[:, None] * self.inv_freq[None, :]  # [pos, d_rot / 2]
        cos = angles.cos().repeat(1, 2)[None, :, None, :]  # [1, pos, 1, d_rot]
        sin = angles.sin().repeat(1, 2)[None, :, None, :]
        x_rot, x_pass = x[..., : self.d_rot], x[..., self.d_rot :]
        half = self.d_rot // 2
        rotated_half = torch.cat([-x_rot[..., half:], x_rot[..., :half]], dim=-1)  # (-x2, x1)
        return torch.cat([x_rot * cos.to(x.dtype) + rotated_half * sin.to(x.dtype), x_pass], dim=-1)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """m_h = 2^(-8h / n_heads) for h = 1..n_heads (the paper's geometric sequence; for a head count that is
    not a power of two, the paper's recipe: the slopes of the next-lower power of two, then every other
    slope of the next-higher one)."""

    def power_of_two(n: int) -> list[float]:
        return [2 ** (-8 * (h + 1) / n) for h in range(n)]

    closest = 2 ** (n_heads.bit_length() - 1)
    slopes = power_of_two(closest)
    if closest < n_heads:
        slopes += power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes)


class ALiBi(nn.Module):
    """bias[h, i, j] = -m_h * |i - j|, added to head h's attention scores before the softmax."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)  # [heads]

    def forward(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
        distance = (q_positions[:, None] - k_positions[None, :]).abs().float()  # [q_pos, k_pos]
        return -self.slopes[:, None, None] * distance[None]  # [heads, q_pos, k_pos]
