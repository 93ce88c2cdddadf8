"""GPT-2's initialisation, drawn where each parameter is made, so every component is ready on its own.

    W_E, W_pos, W_Q, W_K, W_V, W_in, W_gate, W_U, ...   ~ N(0, init_std^2)
    W_O, W_out (they write into the residual stream)    ~ N(0, init_std^2 / n_residual_writes)
    biases = 0, norm gains = 1

The residual writers are scaled because the stream is a sum of ``n_residual_writes`` sublayer outputs
(2 per block: attention and MLP); without the scale its variance grows with depth (Radford et al. 2019,
section 2.2: "scale the weights of residual layers at initialization by a factor of 1/sqrt(N)").
"""

from __future__ import annotations

import torch
from torch import nn

from glassformer.model.config import ModelConfig


def normal(*shape: int, std: float) -> nn.Parameter:
    """A parameter of ``shape`` drawn from N(0, std^2)."""
    return nn.Parameter(torch.empty(*shape).normal_(std=std))


def weight(config: ModelConfig, *shape: int) -> nn.Parameter:
    """A weight matrix ~ N(0, init_std^2)."""
    return normal(*shape, std=config.init_std)


def residual_weight(config: ModelConfig, *shape: int) -> nn.Parameter:
    """A matrix that writes into the residual stream (W_O, W_out) ~ N(0, init_std^2 / n_residual_writes)."""
    return normal(*shape, std=config.init_std / config.n_residual_writes**0.5)
