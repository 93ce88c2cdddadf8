"""The position-wise feed-forward network (the paper's FFN, section 3.3), plain or gated.

Plain (``act`` in relu, relu2, gelu, gelu_tanh):

    pre  = x W_in + b_in          [batch, pos, d_mlp]
    post = act(pre)               [batch, pos, d_mlp]
    out  = post W_out + b_out     [batch, pos, d_model]

Gated, a GLU variant (``act`` in swiglu, geglu; Shazeer 2020, "GLU Variants Improve Transformer"):

    pre        = x W_gate + b_gate            [batch, pos, d_mlp]   the gate, before its nonlinearity
    pre_linear = x W_in + b_in                [batch, pos, d_mlp]   the linear ("up") branch
    post       = act(pre) * pre_linear        [batch, pos, d_mlp]   act = SiLU (SwiGLU) or GELU (GeGLU)
    out        = post W_out + b_out           [batch, pos, d_model]

In both, hook ``mlp.pre`` holds what enters the nonlinearity and ``mlp.post`` what W_out reads, so a
neuron's activation is ``post[..., i]`` and its output direction is ``W_out[i]`` either way. (Llama's
``gate_proj``, ``up_proj``, ``down_proj`` are W_gate^T, W_in^T, W_out^T; TransformerLens names them alike.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glassformer.model.config import ModelConfig
from glassformer.model.describe import Description
from glassformer.model.hooks import HookPoint
from glassformer.model.init import residual_weight, weight
from glassformer.model.registry import register


def relu_squared(x: torch.Tensor) -> torch.Tensor:
    """ReLU^2(x) = max(0, x)^2  (So et al. 2021, "Primer")."""
    return F.relu(x).square()


ACTIVATIONS = {
    "relu": F.relu,  # max(0, x): the paper's choice
    "relu2": relu_squared,  # max(0, x)^2: Primer
    "gelu": F.gelu,  # x * Phi(x) (Hendrycks & Gimpel 2016): BERT
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's tanh approximation of GELU
}

ACTIVATION_TEX = {  # each activation's equation, for the explain trace; names as papers print them
    "relu": ("ReLU", r"\mathrm{ReLU}(a) = \max(0, a)"),
    "relu2": ("ReLU²", r"\mathrm{ReLU}^2(a) = \max(0, a)^2"),
    "gelu": ("GELU", r"\mathrm{GELU}(a) = a\,\Phi(a)"),
    "gelu_tanh": ("GELU (tanh)", r"\mathrm{GELU}(a) \approx \frac{a}{2}(1 + \tanh(\sqrt{2/\pi}(a + 0.044715 a^3)))"),
    "swiglu": ("SwiGLU", r"\mathrm{SiLU}(a) = a\,\sigma(a)"),
    "geglu": ("GeGLU", r"\mathrm{GELU}(a) = a\,\Phi(a)"),
    "geglu_tanh": ("GeGLU (tanh)", r"\mathrm{GELU}(a) \approx \frac{a}{2}(1 + \tanh(\sqrt{2/\pi}(a + 0.044715 a^3)))"),
}

GATED_ACTIVATIONS = {
    "swiglu": F.silu,  # SiLU(x) = x * sigmoid(x) gates the linear branch: PaLM, Llama
    "geglu": F.gelu,  # GELU(x) gates the linear branch: T5 v1.1
    "geglu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GELU's tanh approximation gates it: Gemma
}


register("act", (*ACTIVATIONS, *GATED_ACTIVATIONS))  # gated: swiglu/geglu (GatedMLP)


class MLP(nn.Module):
    """out = act(x W_in + b_in) W_out + b_out, applied to every position independently."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.W_in = weight(config, config.d_model, config.d_mlp)
        self.W_out = residual_weight(config, config.d_mlp, config.d_model)
        self.b_in = nn.Parameter(torch.zeros(config.d_mlp)) if config.bias else None
        self.b_out = nn.Parameter(torch.zeros(config.d_model)) if config.bias else None
        self.act = ACTIVATIONS[config.act]
        self.pre, self.post = HookPoint(), HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre(F.linear(x, self.W_in.T, self.b_in))  # [batch, pos, d_mlp]
        post = self.post(self.act(pre))  # [batch, pos, d_mlp]
        return F.linear(post, self.W_out.T, self.b_out)  # [batch, pos, d_model]

    def describe(self) -> Description:
        name, act_tex = ACTIVATION_TEX[_name_of(self.act, ACTIVATIONS)]
        d_model, d_mlp = self.W_in.shape
        return Description(
            f"MLP ({name})",
            (r"\mathrm{pre} = x W_{\mathrm{in}} + b_{\mathrm{in}}", r"\mathrm{post} = \mathrm{act}(\mathrm{pre})", act_tex,
             r"\mathrm{mlp\_out} = \mathrm{post}\, W_{\mathrm{out}} + b_{\mathrm{out}}"),
            "The same two-layer network at every position, independently.",
            f"d_model={d_model} → d_mlp={d_mlp} → d_model",
        )


class GatedMLP(nn.Module):
    """out = (act(x W_gate + b_gate) * (x W_in + b_in)) W_out + b_out: SwiGLU / GeGLU.

    Three matrices instead of two; to keep the parameter count of a plain MLP with d_mlp = 4 d_model,
    papers use d_mlp = 8/3 d_model (set ``d_mlp`` yourself: it is not adjusted).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.W_gate = weight(config, config.d_model, config.d_mlp)
        self.W_in = weight(config, config.d_model, config.d_mlp)
        self.W_out = residual_weight(config, config.d_mlp, config.d_model)
        self.b_gate = nn.Parameter(torch.zeros(config.d_mlp)) if config.bias else None
        self.b_in = nn.Parameter(torch.zeros(config.d_mlp)) if config.bias else None
        self.b_out = nn.Parameter(torch.zeros(config.d_model)) if config.bias else None
        self.act = GATED_ACTIVATIONS[config.act]
        self.pre, self.pre_linear, self.post = HookPoint(), HookPoint(), HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre(F.linear(x, self.W_gate.T, self.b_gate))  # [batch, pos, d_mlp]
        pre_linear = self.pre_linear(F.linear(x, self.W_in.T, self.b_in))  # [batch, pos, d_mlp]
        post = self.post(self.act(pre) * pre_linear)  # [batch, pos, d_mlp]
        return F.linear(post, self.W_out.T, self.b_out)  # [batch, pos, d_model]

    def describe(self) -> Description:
        name, act_tex = ACTIVATION_TEX[_name_of(self.act, GATED_ACTIVATIONS)]
        d_model, d_mlp = self.W_in.shape
        return Description(
            f"MLP ({name}, gated)",
            (r"a = x W_{\mathrm{gate}} + b_{\mathrm{gate}}, \quad u = x W_{\mathrm{in}} + b_{\mathrm{in}}",
             r"\mathrm{post} = \mathrm{act}(a) \odot u", act_tex,
             r"\mathrm{mlp\_out} = \mathrm{post}\, W_{\mathrm{out}} + b_{\mathrm{out}}"),
            "A GLU variant: the activated gate a multiplies a second, linear branch u, at every position independently.",
            f"d_model={d_model} → 2 × d_mlp={d_mlp} → d_model",
        )


def _name_of(act, table: dict) -> str:
    """The config name of an activation function (its key in ``table``)."""
    return next(name for name, f in table.items() if f is act)


def make_mlp(config: ModelConfig) -> nn.Module | None:
    """The MLP the config asks for (None for attention-only models)."""
    if config.attn_only:
        return None
    return GatedMLP(config) if config.act in GATED_ACTIVATIONS else MLP(config)
