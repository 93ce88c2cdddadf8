"""The vision transformer's input (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words").

``input="patches"``: the model reads images instead of token ids. An image [channels, H, W] is cut into
N = (H / P)^2 square patches of P x P pixels, each flattened (channel, row, column order) to a vector of
patch_dim = channels * P^2 numbers, then

    embed     = [W_cls ; patches W_patch + b_patch]      [batch, 1 + N, d_model]   W_patch [patch_dim, d_model]
    resid_0   = embed + W_pos                           (learned positions, as in ViT; any scheme works)

The learned class token W_cls [d_model] sits at position 0; the encoder is bidirectional, and the
classifier reads the class token's final residual (``classify``; ``forward`` returns the same class
logits for such a model, since it has no vocabulary).
"""

from __future__ import annotations

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.model.config import ModelConfig
from glassformer.model.describe import Description
from glassformer.model.embed import Embed
from glassformer.model.hooks import HookPoint
from glassformer.model.init import weight
from glassformer.model.registry import register


def image_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[batch, channels, H, W] -> [batch, N, channels * P * P]: non-overlapping patches, row-major."""
    batch, channels, H, W = images.shape
    P = patch_size
    patches = images.reshape(batch, channels, H // P, P, W // P, P)  # [batch, c, rows, P, cols, P]
    patches = patches.permute(0, 2, 4, 1, 3, 5)  # [batch, rows, cols, c, P, P]
    return patches.reshape(batch, (H // P) * (W // P), channels * P * P)


class PatchEmbed(nn.Module):
    """embed = [W_cls ; patches(images) W_patch + b_patch]: one residual vector per patch, after a class token."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.image_size, self.patch_size, self.n_channels = config.image_size, config.patch_size, config.n_channels
        patch_dim = config.n_channels * config.patch_size**2
        self.W_patch = weight(config, patch_dim, config.d_model)
        self.b_patch = nn.Parameter(torch.zeros(config.d_model))
        self.W_cls = weight(config, config.d_model)
        self.output = HookPoint()  # named "embed": [batch, 1 + n_patches, d_model]

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        """Accept [batch, channels, H, W], [batch, H, W] (one channel) or [batch, channels * H * W] (flattened,
        as a training Batch stores them); return [batch, channels, H, W] float."""
        c, s = self.n_channels, self.image_size
        if not isinstance(images, torch.Tensor) or not images.dtype.is_floating_point:
            raise InputError(
                f"a vision model (input='patches') reads float images, got {getattr(images, 'dtype', type(images).__name__)}"
            )
        shape = tuple(images.shape)
        if images.dim() == 2 and shape[1] == c * s * s:
            return images.reshape(shape[0], c, s, s)
        if images.dim() == 3 and c == 1 and shape[1:] == (s, s):
            return images[:, None]
        if images.dim() == 4 and shape[1:] == (c, s, s):
            return images
        raise InputError(
            f"images must have shape [batch, {c}, {s}, {s}]" + (f", [batch, {s}, {s}]" if c == 1 else "")
            + f" or [batch, {c * s * s}], got {list(shape)}"
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        patches = image_patches(images, self.patch_size)  # [batch, n_patches, patch_dim]
        x = patches @ self.W_patch + self.b_patch  # [batch, n_patches, d_model]
        cls = self.W_cls.expand(x.shape[0], 1, -1)  # [batch, 1, d_model]
        return self.output(torch.cat([cls, x], dim=1))  # [batch, 1 + n_patches, d_model]

    def describe(self) -> Description:
        patch_dim, d_model = self.W_patch.shape
        n = (self.image_size // self.patch_size) ** 2
        return Description(
            "Patch embedding W_patch + class token",
            (r"\mathrm{patches} = \mathrm{cut}(\mathrm{image}, P \times P)", r"\mathrm{embed} = [W_{\mathrm{cls}};\ \mathrm{patches}\, W_{\mathrm{patch}} + b_{\mathrm{patch}}]"),
            f"The {self.image_size}×{self.image_size} image is cut into {n} patches of {self.patch_size}×{self.patch_size}×"
            f"{self.n_channels} pixels, each flattened and mapped to d_model; a learned class token W_cls comes first (position 0).",
            f"image {self.n_channels}×{self.image_size}×{self.image_size} → {n} patches + [cls], W_patch [{patch_dim}, {d_model}]",
        )


INPUTS = {"tokens": Embed, "patches": PatchEmbed}  # config.input -> the module that makes resid_0's first term
register("input", INPUTS)
