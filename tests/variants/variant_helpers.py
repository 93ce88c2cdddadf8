"""Helpers shared by the variant tests (imported as a plain module: tests/variants has no __init__.py)."""

import torch


def scramble(model, std: float = 0.3, seed: int = 0):
    """Give every parameter random values of size ``std`` (not the tiny init), so that attention patterns are
    sharp and a wrong key, bias or mask changes the output clearly. Returns the model, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()
