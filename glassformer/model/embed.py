"""Token embedding, additive positional embeddings, and the unembedding.

    embed      = W_E[tokens]                       W_E   [d_vocab, d_model]
    pos_embed  = W_pos[positions]                  W_pos [n_ctx, d_model]   (learned)
               = sinusoid(positions)                                         (sinusoidal, fixed)
    resid_0    = embed + pos_embed
    logits     = x W_U + b_U                       W_U   [d_model, d_vocab_out]  (= W_E^T when tied)

RoPE and ALiBi act inside attention instead (see ``positional.py``), so they add nothing here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from glassformer.model.config import ModelConfig
from glassformer.model.describe import Description
from glassformer.model.hooks import HookPoint
from glassformer.model.init import normal, weight
from glassformer.model.positional import ExactFrequencies
from glassformer.model.mlp import ACTIVATIONS
from glassformer.model.norms import make_norm
from glassformer.model.registry import register


class Embed(nn.Module):
    """embed = W_E[tokens]: row ``t`` of W_E is token ``t``'s vector in the residual stream."""

    def __init__(self, d_vocab: int, d_model: int, init_std: float = 0.02):
        super().__init__()
        self.W_E = normal(d_vocab, d_model, std=init_std)
        self.output = HookPoint()  # named "embed"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.output(F.embedding(tokens, self.W_E))  # W_E[tokens]: [batch, pos, d_model] (its backward: no sort)

    def describe(self) -> Description:
        d_vocab, d_model = self.W_E.shape
        return Description("Token embedding W_E", (r"\mathrm{embed}_i = W_E[t_i]",),
                           "Each token id picks one row of the embedding matrix.", f"[d_vocab={d_vocab}, d_model={d_model}]")


class LearnedPositional(nn.Module):
    """pos_embed = W_pos[positions]: one learned vector per position (GPT, BERT)."""

    def __init__(self, n_ctx: int, d_model: int, init_std: float = 0.02):
        super().__init__()
        self.W_pos = normal(n_ctx, d_model, std=init_std)
        self.output = HookPoint()  # named "pos_embed"

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.output(F.embedding(positions, self.W_pos))  # W_pos[positions]: [pos, d_model] ([batch, pos, d_model] for per-row positions)

    def describe(self) -> Description:
        n_ctx, d_model = self.W_pos.shape
        return Description("Positional embedding W_pos", (r"\mathrm{pos}_i = W_{\mathrm{pos}}[i]",),
                           "One learned vector per position, added to the token's.", f"[n_ctx={n_ctx}, d_model={d_model}]")


class SinusoidalPositional(ExactFrequencies):
    """The paper's fixed positions (section 3.5), for any position p and dimension pair i:

        PE[p, 2i]   = sin(p / 10000^(2i / d_model))
        PE[p, 2i+1] = cos(p / 10000^(2i / d_model))

    Nothing is learned, and it is defined for positions beyond ``n_ctx``.
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.d_model = d_model
        self.register_buffer("inv_freq", self.frequencies().float(), persistent=False)  # [d_model / 2]
        self.output = HookPoint()  # named "pos_embed"

    def frequencies(self) -> torch.Tensor:
        return torch.exp(-math.log(10000.0) * torch.arange(0, self.d_model, 2, dtype=torch.float64) / self.d_model)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        angles = positions.to(self.inv_freq.dtype)[..., None] * self.inv_freq  # [(batch,) pos, d_model / 2]
        pe = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # [(batch,) pos, d_model]: sin, cos interleaved
        return self.output(pe)

    def describe(self) -> Description:
        return Description(
            "Sinusoidal positions",
            (r"PE_{i, 2k} = \sin(i\,\omega_k), \quad PE_{i, 2k+1} = \cos(i\,\omega_k), \quad \omega_k = 10000^{-2k/d_{\mathrm{model}}}",),
            "Fixed sinusoids (nothing learned), defined for any position, added to the token's vector.",
            "fixed sin/cos, nothing learned",
        )


POSITIONAL_EMBEDDINGS = {"learned": LearnedPositional, "sinusoidal": SinusoidalPositional}  # added to resid_0
register("positional", (*POSITIONAL_EMBEDDINGS, "none"))  # none: no positions at all


def make_positional(config: ModelConfig) -> nn.Module | None:
    """The additive positional embedding, or None for schemes that act inside attention (or none at all)."""
    if config.positional == "learned":
        return LearnedPositional(config.n_ctx, config.d_model, config.init_std)
    if config.positional == "sinusoidal":
        return SinusoidalPositional(config.d_model)
    return None


class Unembed(nn.Module):
    """logits = x W_U + b_U: read each position's residual vector out as scores over the vocabulary.
    With ``softcap`` c (Gemma 2's final logit soft-capping): logits = c tanh((x W_U + b_U) / c), in (-c, c)."""

    def __init__(self, d_model: int, d_vocab_out: int, bias: bool, tied_to: Embed | None = None, init_std: float = 0.02,
                 softcap: float | None = None):
        super().__init__()
        self.softcap = softcap
        # Tied: W_U is W_E^T, read from the embedding at call time (one parameter, two uses).
        self._tied_to = [tied_to] if tied_to is not None else None  # a list hides it from the module tree
        self.W_U = None if tied_to is not None else normal(d_model, d_vocab_out, std=init_std)
        self.b_U = nn.Parameter(torch.zeros(d_vocab_out)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """W_U [d_model, d_vocab_out], whether tied or not."""
        return self._tied_to[0].W_E.T if self._tied_to is not None else self.W_U

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.linear(x, self.weight.T, self.b_U)  # [batch, pos, d_vocab_out]: one op, one logits buffer
        return logits if self.softcap is None else self.softcap * torch.tanh(logits / self.softcap)

    def describe(self) -> Description:
        d_model, d_vocab_out = self.weight.shape
        tied = self._tied_to is not None
        return Description(
            "Unembedding W_U" + (" = W_Eᵀ (tied)" if tied else ""),
            (r"\mathrm{logits} = x W_U" + (" + b_U" if self.b_U is not None else ""),
             *([rf"\mathrm{{logits}} \leftarrow {self.softcap:g} \tanh(\mathrm{{logits}} / {self.softcap:g})"] if self.softcap else [])),
            "The final residual stream read out as scores over the vocabulary."
            + (" Tied embeddings: W_U = W_E^T (the embedding matrix, transposed)." if tied else "")
            + (f" Soft-capped: c tanh(logits / c) squashes them into (-{self.softcap:g}, {self.softcap:g})." if self.softcap else ""),
            f"[d_model={d_model}, d_vocab_out={d_vocab_out}]",
        )


class UnembedTransform(nn.Module):
    """BERT's MLM-head transform (``unembed_transform=True``), between the final residual stream and W_U:

        h      = Norm(act(x W_T + b_T))        W_T [d_model, d_model]       [batch, pos, d_model]
        logits = h W_U + b_U

    Hook points: ``unembed_transform.pre`` (x W_T + b_T), ``unembed_transform.ln`` and the output
    ``unembed_transform``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.W_T = weight(config, config.d_model, config.d_model)
        self.b_T = nn.Parameter(torch.zeros(config.d_model)) if config.bias else None
        self.act = ACTIVATIONS[config.act]
        self.pre = HookPoint()  # [batch, pos, d_model]
        self.ln = make_norm(config)
        self.output = HookPoint()  # named "unembed_transform"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre(nn.functional.linear(x, self.W_T.T, self.b_T))  # [batch, pos, d_model]
        return self.output(self.ln(self.act(pre)))  # [batch, pos, d_model]

    def describe(self) -> Description:
        return Description("MLM transform (BERT)", (r"h = \mathrm{Norm}(\mathrm{act}(x W_T + b_T))",),
                           "BERT's masked-LM head transform: the unembedding reads h instead of x.", "Norm(act(x W_T + b_T))")
