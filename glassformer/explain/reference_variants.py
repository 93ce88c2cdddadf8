"""The variants' equations in NumPy (float64): what the reference adds to the 2017 family, one function each.

    T5 bias       bias[h, i, j] = W_bias[bucket(j - i), h]                          t5_bucket, t5_bias
    sliding       i sees j  iff  0 <= i - j < w   (bidirectional: |i - j| < w)      sliding_allowed
    sparse        strided: |i - j| < l or (i - j) mod l = 0;                         sparse_allowed
                  fixed:   floor(i / l) = floor(j / l) or j mod l >= l - c   (causal: and j <= i)
    linear        pattern_ij = phi(q_i).phi(k_j) / (sum_k phi(q_i).phi(k_k) + eps),  linear_pattern
                  phi(x) = elu(x) + 1, no softmax, no scale
    Linformer     k' = E[:, :n] k,  v' = F[:, :n] v;  pattern = softmax(scale q k'^T) linformer_project
    patches       embed = [W_cls ; patches(image) W_patch + b_patch]                 image_patches

Every function is checked against the model's own forward, hook by hook, in
``tests/explain/test_reference.py``. Transformer-XL's memory is not a new equation but a longer key
sequence ``[SG(mem) ; h]``: :mod:`~glassformer.explain.reference` carries it from segment to segment.
"""

from __future__ import annotations

import math

import numpy as np

# -- positions inside attention ---------------------------------------------------------------------------


def t5_bucket(offset: np.ndarray, bidirectional: bool, n_buckets: int, max_distance: int) -> np.ndarray:
    """T5's bucket of an offset j - i: exact below n/2, then log-spaced up to max_distance (n halved per
    direction when bidirectional; a causal model only uses d = i - j >= 0)."""
    buckets = np.zeros_like(offset)
    if bidirectional:
        n_buckets //= 2
        buckets = buckets + (offset > 0) * n_buckets  # keys after the query: the upper half
        distance = np.abs(offset)
    else:
        distance = np.maximum(-offset, 0)
    max_exact = n_buckets // 2
    with np.errstate(divide="ignore"):
        log_ratio = np.log(np.maximum(distance, 1) / max_exact) / math.log(max_distance / max_exact)
    large = np.minimum(max_exact + np.floor(log_ratio * (n_buckets - max_exact)).astype(np.int64), n_buckets - 1)
    return buckets + np.where(distance < max_exact, distance, large)


def t5_bias(W_bias: np.ndarray, q_positions, k_positions, bidirectional: bool, max_distance: int) -> np.ndarray:
    """bias[h, i, j] = W_bias[bucket(j - i), h].  [heads, q_pos, k_pos]"""
    offset = k_positions[None, :] - q_positions[:, None]  # [q_pos, k_pos]
    bucket = t5_bucket(offset, bidirectional, W_bias.shape[0], max_distance)
    return np.moveaxis(W_bias[bucket], -1, 0)


# -- which keys a query sees ------------------------------------------------------------------------------


def causal_allowed(q_positions, k_positions, causal: bool, config) -> np.ndarray:
    """Full attention: every key (j <= i when causal).  [q_pos, k_pos]"""
    allowed = np.ones((len(q_positions), len(k_positions)), dtype=bool)
    return allowed & (k_positions[None, :] <= q_positions[:, None]) if causal else allowed


def sliding_allowed(q_positions, k_positions, causal: bool, config) -> np.ndarray:
    """0 <= i - j < window (causal) or |i - j| < window.  [q_pos, k_pos]"""
    d = q_positions[:, None] - k_positions[None, :]
    return (d >= 0) & (d < config.window) if causal else np.abs(d) < config.window


def sparse_allowed(q_positions, k_positions, causal: bool, config) -> np.ndarray:
    """The Sparse Transformer's strided or fixed pattern with block length l = stride.  [q_pos, k_pos]"""
    i, j, l = q_positions[:, None], k_positions[None, :], config.stride
    if config.sparse_pattern == "strided":
        ok = (np.abs(i - j) < l) | ((i - j) % l == 0)
    else:
        ok = (i // l == j // l) | (j % l >= l - config.sparse_summary)
    return ok & (j <= i) if causal else ok


# -- attention without a softmax over positions -----------------------------------------------------------


def elu_plus_one(x: np.ndarray) -> np.ndarray:
    """phi(x) = elu(x) + 1 = x + 1 for x > 0, exp(x) otherwise: always > 0."""
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def linear_scores(q: np.ndarray, k: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """scores_ij = phi(q_i).phi(k_j), 0 where not allowed:  [batch, heads, q_pos, k_pos]"""
    scores = np.einsum("bqhe,bkhe->bhqk", elu_plus_one(q), elu_plus_one(k))
    return np.where(allowed, scores, 0.0)


def linear_pattern(scores: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """pattern_ij = scores_ij / (sum_k scores_ik + eps): kernel weights normalised per query."""
    return scores / (scores.sum(-1, keepdims=True) + eps)


def linformer_project(E: np.ndarray, t: np.ndarray) -> np.ndarray:
    """t' = E[:, :n] t along positions: [batch, n, heads, d_head] -> [batch, linformer_k, heads, d_head]."""
    return np.einsum("sn,bnhe->bshe", E[:, : t.shape[1]], t)


# -- images -----------------------------------------------------------------------------------------------


def image_patches(images: np.ndarray, patch_size: int) -> np.ndarray:
    """[batch, channels, H, W] -> [batch, N, channels * P * P]: non-overlapping P x P patches, row-major."""
    batch, channels, H, W = images.shape
    P = patch_size
    patches = images.reshape(batch, channels, H // P, P, W // P, P).transpose(0, 2, 4, 1, 3, 5)
    return patches.reshape(batch, (H // P) * (W // P), channels * P * P)


def patch_embed(images: np.ndarray, W_patch: np.ndarray, b_patch: np.ndarray, W_cls: np.ndarray, patch_size: int) -> np.ndarray:
    """embed = [W_cls ; patches W_patch + b_patch]:  [batch, 1 + N, d_model]"""
    x = image_patches(images, patch_size) @ W_patch + b_patch  # [batch, N, d_model]
    cls = np.broadcast_to(W_cls, (x.shape[0], 1, x.shape[-1]))
    return np.concatenate([cls, x], axis=1)


ALLOWED = {"full": causal_allowed, "sliding": sliding_allowed, "sparse": sparse_allowed, "linear": causal_allowed}
