"""Positional schemes that act inside attention rather than on the residual stream.

* RoPE (Su et al. 2021, "RoFormer"): rotate each (query, key) pair of dimensions by an angle
  proportional to the position, so that q_i . k_j depends on positions only through i - j.
* ALiBi (Press et al. 2022, "Train Short, Test Long"): add -m_h * |i - j| to head h's scores, with a
  fixed geometric slope m_h per head; no position enters the residual stream at all.
* T5's relative position bias (Raffel et al. 2020): add a learned b[h, bucket(j - i)] to head h's
  scores, with offsets grouped into log-spaced buckets.

The score biases (ALiBi, T5) take query and key positions of any broadcastable shape
(``[..., q_pos]`` and ``[..., k_pos]``) so that block-sparse attention can ask for the bias of its
blocks only: ``bias(q_positions, k_positions) -> [heads, ..., q_pos, k_pos]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from glassformer.model.describe import Description
from glassformer.model.init import normal
from glassformer.model.registry import register


class ExactFrequencies(nn.Module):
    """A module whose ``inv_freq`` buffer (rotation or sinusoid frequencies theta_i) survives a change of the
    model's dtype exactly: ``model.to(torch.bfloat16)`` would round theta_i to 8 bits of mantissa, which puts
    the angle p * theta_i at position 1000 off by several radians. After every ``.to()`` / ``.half()`` /
    ``.double()`` the table is recomputed from its formula, in float32 (float64 for a float64 model)."""

    def frequencies(self) -> torch.Tensor:
        """theta_i, computed in float64."""
        raise NotImplementedError

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        dtype = torch.float64 if self.inv_freq.dtype == torch.float64 else torch.float32
        self.inv_freq = self.frequencies().to(self.inv_freq.device, dtype)
        return self


class Rotary(ExactFrequencies):
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
        self.d_rot, self.base = int(d_head * fraction), base
        self.register_buffer("inv_freq", self.frequencies().float(), persistent=False)  # [d_rot / 2]

    def frequencies(self) -> torch.Tensor:
        return self.base ** (-torch.arange(0, self.d_rot, 2, dtype=torch.float64) / self.d_rot)  # [d_rot / 2]

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x [batch, pos, heads, d_head], positions [pos] -> x rotated, same shape.

        Written as x' = x cos + roll(x, d_rot/2) sin_signed, with sin_signed = (-sin, sin): roll swaps the two
        halves (x_{i+d_rot/2}, x_i), the sign makes the first half's term negative; three ops and their backward
        instead of the slices, negation and concatenation of rotate-half. The cos / sin tables are made once for
        the queries and reused for the keys of the same call (the same ``positions`` tensor)."""
        cos, sin = self._tables(positions, x.dtype)  # [1, pos, 1, d_rot] each
        if self.d_rot == x.shape[-1]:
            return x * cos + x.roll(self.d_rot // 2, dims=-1) * sin
        x_rot, x_pass = x[..., : self.d_rot], x[..., self.d_rot :]
        return torch.cat([x_rot * cos + x_rot.roll(self.d_rot // 2, dims=-1) * sin, x_pass], dim=-1)

    def _tables(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos(p theta) and (-sin, sin)(p theta) for every position, repeated over both halves: [1, pos, 1, d_rot]."""
        cached = self.__dict__.get("_last")
        if cached is not None and cached[0] is positions and cached[1] == dtype and not torch.compiler.is_compiling():
            return cached[2], cached[3]
        angles = positions.to(self.inv_freq.dtype)[:, None] * self.inv_freq[None, :]  # [pos, d_rot / 2]
        cos, sin = angles.cos(), angles.sin()
        cos = torch.cat([cos, cos], dim=-1)[None, :, None, :].to(dtype)  # [1, pos, 1, d_rot]
        sin = torch.cat([-sin, sin], dim=-1)[None, :, None, :].to(dtype)
        if not torch.compiler.is_compiling():
            self.__dict__["_last"] = (positions, dtype, cos, sin)  # a plain attribute: not a buffer, not saved
        return cos, sin

    def describe(self) -> Description:
        return Description(
            "RoPE",
            (r"x'_i = x_i \cos p\theta_i - x_{i + d/2} \sin p\theta_i, \quad x'_{i + d/2} = x_i \sin p\theta_i + x_{i + d/2} \cos p\theta_i, \quad "
             rf"\theta_i = {self.base:g}^{{-2i/d}}",),
            f"RoPE rotates q and k by their positions p (the first d = {self.d_rot} dimensions of each head, in pairs), so "
            "q_i · k_j depends on the positions only through i - j.",
            f"d_rot={self.d_rot}, base={self.base:g}",
        )


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


def relative_offsets(q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
    """offset[..., i, j] = k_positions[..., j] - q_positions[..., i]  (negative: the key is in the past)."""
    return k_positions[..., None, :] - q_positions[..., :, None]  # [..., q_pos, k_pos]


class ALiBi(nn.Module):
    """bias[h, i, j] = -m_h * |i - j|, added to head h's attention scores before the softmax."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)  # [heads]

    def forward(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
        distance = relative_offsets(q_positions, k_positions).abs().float()  # [..., q_pos, k_pos]
        slopes = self.slopes.view(-1, *[1] * distance.dim())  # [heads, 1, ..., 1]
        return -slopes * distance  # [heads, ..., q_pos, k_pos]

    score_term = r" - m_h |i - j|"  # what it adds to the scores equation

    def describe(self) -> Description:
        return Description(
            "ALiBi", (r"\mathrm{bias}_h[i, j] = -m_h |i - j|, \quad m_h = 2^{-8h/H}",),
            "ALiBi adds -m_h |i - j| to head h's scores: a fixed penalty growing with distance, one slope per head.",
            "slopes " + ", ".join(f"{m:.3g}" for m in alibi_slopes(len(self.slopes)).tolist()[:4]) + ("…" if len(self.slopes) > 4 else ""),
        )


def t5_bucket(offset: torch.Tensor, bidirectional: bool, n_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """T5's bucket of a relative offset ``j - i`` (Raffel et al. 2020, section 2.1; HF's
    ``_relative_position_bucket``). With n = n_buckets (halved when bidirectional: one half for keys after
    the query, one for keys before it; a causal model only sees d = i - j >= 0):

        bucket(d) = d                                                        if d < n/2   (one per offset)
                  = n/2 + floor(log(d / (n/2)) / log(max_distance / (n/2)) * (n - n/2))   capped at n - 1

    so near offsets are told apart exactly and far ones share logarithmically wider buckets; every
    offset beyond ``max_distance`` lands in the last bucket.
    """
    buckets = torch.zeros_like(offset)
    if bidirectional:
        n_buckets //= 2
        buckets = buckets + (offset > 0).long() * n_buckets  # keys after the query use the upper half
        distance = offset.abs()
    else:
        distance = (-offset).clamp(min=0)  # keys in the past: d = i - j
    max_exact = n_buckets // 2
    is_small = distance < max_exact
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (n_buckets - max_exact)).long()).clamp(max=n_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class T5RelativeBias(nn.Module):
    """bias[h, i, j] = W_bias[bucket(j - i), h]: one learned scalar per (offset bucket, head), added to
    head h's scores. T5 learns one table per stack and shares it across layers; here each layer has its
    own (a shared table is the special case of equal tables)."""

    def __init__(self, n_heads: int, bidirectional: bool, n_buckets: int = 32, max_distance: int = 128, init_std: float = 0.02):
        super().__init__()
        self.bidirectional, self.n_buckets, self.max_distance = bidirectional, n_buckets, max_distance
        self.W_bias = normal(n_buckets, n_heads, std=init_std)

    def forward(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
        offset = relative_offsets(q_positions, k_positions)  # [..., q_pos, k_pos]
        bucket = t5_bucket(offset, self.bidirectional, self.n_buckets, self.max_distance)
        return self.W_bias[bucket].movedim(-1, 0)  # [heads, ..., q_pos, k_pos]

    score_term = r" + W_{\mathrm{bias}}[\mathrm{bucket}(j - i), h]"  # what it adds to the scores equation

    def describe(self) -> Description:
        return Description(
            "T5 relative bias",
            (r"\mathrm{bias}_h[i, j] = W_{\mathrm{bias}}[\mathrm{bucket}(j - i), h]",
             r"\mathrm{bucket}(d) = d \text{ for } d < n/2, \text{ else } n/2 + \lfloor \frac{\log(d / (n/2))}"
             r"{\log(D / (n/2))} (n - n/2) \rfloor"),
            f"A learned scalar per (offset bucket, head) is added to the scores; near offsets get one bucket each, far "
            f"ones share log-spaced buckets (n = {self.n_buckets}{' per direction / 2' if self.bidirectional else ''}, "
            f"D = {self.max_distance}).",
            f"W_bias [{self.n_buckets}, heads], max_distance={self.max_distance}",
        )


IN_ATTENTION = {"rope": Rotary, "alibi": ALiBi, "t5": T5RelativeBias}  # positional schemes that act inside attention
register("positional", IN_ATTENTION)
