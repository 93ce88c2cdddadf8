"""Moving weights between Hugging Face's fused matrices and glassformer's per-head ones.

Hugging Face stores a layer's heads side by side in one matrix, in one of two conventions:

* ``nn.Linear`` (Llama, BERT):  y = x W^T + b,  W [out, in]
* ``Conv1D``    (GPT-2):        y = x W + b,    W [in, out]     (the transpose of nn.Linear)

In both, the ``out`` axis of a Q/K/V projection is the heads' outputs concatenated: index ``h * d_head + e``
is dimension ``e`` of head ``h``; the ``in`` axis of the output projection is those same concatenated head
outputs. glassformer keeps heads as a leading axis instead (``W_Q [n_heads, d_model, d_head]``,
``W_O [n_heads, d_head, d_model]``), so  q_h = x W_Q[h]  and  out = sum_h z_h W_O[h]  read off directly.
"""

from __future__ import annotations

import torch


def heads_from_in_out(W: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[d_model, n_heads * d_head] (x W) -> [n_heads, d_model, d_head] (W_Q / W_K / W_V)."""
    d_model = W.shape[0]
    return W.reshape(d_model, n_heads, -1).permute(1, 0, 2).contiguous()  # [n_heads, d_model, d_head]


def heads_to_in_out(W: torch.Tensor) -> torch.Tensor:
    """[n_heads, d_model, d_head] -> [d_model, n_heads * d_head], the inverse of :func:`heads_from_in_out`."""
    n_heads, d_model, d_head = W.shape
    return W.permute(1, 0, 2).reshape(d_model, n_heads * d_head).contiguous()


def heads_from_linear(W: torch.Tensor, n_heads: int) -> torch.Tensor:
    """nn.Linear weight [n_heads * d_head, d_model] -> [n_heads, d_model, d_head]."""
    return heads_from_in_out(W.T, n_heads)


def out_heads_from_in_out(W: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[n_heads * d_head, d_model] (z_concat W) -> W_O [n_heads, d_head, d_model]."""
    return W.reshape(n_heads, -1, W.shape[1]).contiguous()  # [n_heads, d_head, d_model]


def out_heads_from_linear(W: torch.Tensor, n_heads: int) -> torch.Tensor:
    """nn.Linear weight [d_model, n_heads * d_head] -> W_O [n_heads, d_head, d_model]."""
    return out_heads_from_in_out(W.T, n_heads)


def bias_heads(b: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[n_heads * d_head] -> [n_heads, d_head]."""
    return b.reshape(n_heads, -1).contiguous()
