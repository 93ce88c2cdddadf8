"""The position-wise feed-forward network (the paper's FFN, section 3.3).

    pre  = x W_in + b_in          [batch, pos, d_mlp]
    post = act(pre)               [batch, pos, d_mlp]
    out  = post W_out + b_out     [batch, pos, d_model]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glassformer.model.config import ModelConfig
from glassformer.model.hooks import HookPoint

ACTIVATIONS = {
    "relu": F.relu,  # max(0, x): the paper's choice
    "gelu": F.gelu,  # x * Phi(x) (Hendrycks & Gimpel 2016): BERT
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's tanh approximation of GELU
}


class MLP(nn.Module):
    """out = act(x W_in + b_in) W_out + b_out, applied to every position independently."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(config.d_model, config.d_mlp))
        self.W_out = nn.Parameter(torch.empty(config.d_mlp, config.d_model))
        self.b_in = nn.Parameter(torch.zeros(config.d_mlp)) if config.bias else None
        self.b_out = nn.Parameter(torch.zeros(config.d_model)) if config.bias else None
        self.act = ACTIVATIONS[config.act]
        self.pre, self.post = HookPoint(), HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre(F.linear(x, self.W_in.T, self.b_in))  # [batch, pos, d_mlp]
        post = self.post(self.act(pre))  # [batch, pos, d_mlp]
        return F.linear(post, self.W_out.T, self.b_out)  # [batch, pos, d_model]


def make_mlp(config: ModelConfig) -> nn.Module | None:
    """The MLP the config asks for (None for attention-only models)."""
    return None if config.attn_only else MLP(config)
