"""Normalisation layers, and where they sit in the residual block.

Each norm is a module with two hook points: ``scale`` (the per-position divisor, [batch, pos, 1]) and its
output (named after the norm, e.g. ``blocks.0.ln1``). Caching ``scale`` is what lets the lens apply the
final norm to a decomposed residual stream linearly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from glassformer.model.config import ModelConfig
from glassformer.model.describe import Description
from glassformer.model.hooks import HookPoint
from glassformer.model.registry import register


class LayerNorm(nn.Module):
    """LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * w + b   (Ba et al. 2016), over d_model."""

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model)) if bias else None
        self.scale = HookPoint()  # [batch, pos, 1]
        self.output = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.scale.active or self.output.active):  # fused kernel when nothing is watching
            return nn.functional.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps)
        if self.scale.active:
            var, mean = torch.var_mean(x, -1, keepdim=True, correction=0)  # [batch, pos, 1]
            sigma = (var + self.eps).sqrt()  # [batch, pos, 1]
            scale = self.scale(sigma)
            if scale is not sigma or scale.requires_grad:  # a hook replaced it, or a gradient flows through it
                out = (x - mean) / scale * self.w  # [batch, pos, d_model]
                return self.output(out + self.b if self.b is not None else out)
        # only read: the fused kernel makes the same numbers as one tensor, where the equation above leaves
        # four freed temporaries of x's size behind (heap growth in run_with_cache: bench/results/lens_cache.md)
        return self.output(nn.functional.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps))

    def describe(self) -> Description:
        return Description(
            "LayerNorm",
            (r"\mu = \frac{1}{d} \sum_j x_j, \quad \sigma = \sqrt{\frac{1}{d} \sum_j (x_j - \mu)^2 + \epsilon}",
             r"\mathrm{LN}(x) = \frac{x - \mu}{\sigma} \odot w" + (" + b" if self.b is not None else "")),
            f"Centre, divide by the standard deviation σ (hook: scale), then gain w; over the d = {self.w.numel()} numbers "
            f"of each position separately; ε = {self.eps:g}.",
            f"d={self.w.numel()}",
        )


class RMSNorm(nn.Module):
    """RMSNorm(x) = x / sqrt(mean(x^2) + eps) * w   (Zhang & Sennrich 2019): LayerNorm without centring."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.scale = HookPoint()  # [batch, pos, 1]
        self.output = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.scale.active or self.output.active):  # fused kernel when nothing is watching
            return nn.functional.rms_norm(x, x.shape[-1:], self.w, self.eps)
        scale = self.scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())  # [batch, pos, 1]
        return self.output(x / scale * self.w)

    def describe(self) -> Description:
        return Description(
            "RMSNorm",
            (r"\mathrm{rms} = \sqrt{\frac{1}{d} \sum_j x_j^2 + \epsilon}", r"\mathrm{RMSNorm}(x) = \frac{x}{\mathrm{rms}} \odot w"),
            f"Divide by the root mean square (hook: scale), then gain w; no centring, no bias; over the d = "
            f"{self.w.numel()} numbers of each position; ε = {self.eps:g}.",
            f"d={self.w.numel()}",
        )


class NoNorm(nn.Module):
    """Identity, for models without normalisation (``norm="none"``, e.g. compiled RASP programs)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.output = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(x)

    def describe(self) -> Description:
        return Description("no norm", (r"\mathrm{Norm}(x) = x",), "No normalisation: the identity.")


NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm, "none": NoNorm}  # config.norm -> its module
register("norm", NORMS)


def make_norm(config: ModelConfig) -> nn.Module:
    """The norm module the config asks for."""
    if config.norm == "layernorm":
        return LayerNorm(config.d_model, config.norm_eps, config.bias)
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.norm_eps)
    return NoNorm(config.d_model)


def make_qk_norm(config: ModelConfig) -> nn.Module:
    """QK-norm (Henry et al. 2020; Dehghani et al. 2023, ViT-22B; OLMo 2, Qwen3): normalise each head's
    query and key over d_head, with a gain shared by all heads, before RoPE and the dot product:

        q_h <- Norm(q_h),  k_h <- Norm(k_h),  scores_h = scale * q_h k_h^T

    The norm is the model's own type (LayerNorm or RMSNorm) of size d_head. With w = 1, RMSNorm makes
    |q_h| = |k_h| = sqrt(d_head), so |scores| <= scale * d_head whatever the size of W_Q and W_K: the
    logits cannot blow up, which is what stabilises training at large learning rates.
    """
    if config.norm == "layernorm":
        return LayerNorm(config.d_head, config.norm_eps, config.bias)
    return RMSNorm(config.d_head, config.norm_eps)


# --- where the norm sits: the two residual rules -------------------------------------------------------
Sublayer = Callable[[torch.Tensor], torch.Tensor]


def pre_norm_residual(x: torch.Tensor, norm: nn.Module, sublayer: Sublayer) -> torch.Tensor:
    """Pre-LN:  x + Sublayer(Norm(x)).  What the paper's released code (tensor2tensor), GPT-2 and most
    modern models do; the residual stream itself is never normalised, so a final norm follows the stack."""
    return x + sublayer(norm(x))


def post_norm_residual(x: torch.Tensor, norm: nn.Module, sublayer: Sublayer) -> torch.Tensor:
    """Post-LN:  Norm(x + Sublayer(x)).  Exactly the paper's Figure 1 ("Add & Norm"); the residual stream
    is normalised after every sublayer, which is why Post-LN needs learning-rate warm-up."""
    return norm(x + sublayer(x))


RESIDUAL_RULES = {"pre": pre_norm_residual, "post": post_norm_residual}
register("norm_position", RESIDUAL_RULES)

# What each residual rule looks like to a reader: the sublayer's equation and where its norm sits.
RESIDUAL_EQUATIONS = {
    pre_norm_residual: (r"x \leftarrow x + \mathrm{Sublayer}(\mathrm{Norm}(x))", "Pre-LN", "branch"),
    post_norm_residual: (r"x \leftarrow \mathrm{Norm}(x + \mathrm{Sublayer}(x))", "Post-LN", "trunk"),
}
