"""Norm variants against PyTorch's own kernels: LayerNorm and RMSNorm, their hooked (explicit) paths, and the
optional final norm."""

import pytest
import torch
import torch.nn.functional as F
from variant_helpers import scramble

from glassformer import ModelConfig, Transformer


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_norms_match_torch(norm):
    model = scramble(Transformer(ModelConfig(norm=norm, d_model=32, n_heads=4, d_vocab=9)))
    ln = model.blocks[0].ln1
    _, cache = model.run_with_cache(torch.randint(0, 9, (2, 7)), names=["blocks.0.resid_pre", "blocks.0.ln1", "blocks.0.ln1.scale"])
    x = cache["blocks.0.resid_pre"]
    if norm == "layernorm":
        expected = F.layer_norm(x, (32,), ln.w, ln.b, 1e-5)
        centred = x - x.mean(-1, keepdim=True)
        torch.testing.assert_close(cache["blocks.0.ln1.scale"], (centred.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt())
    else:
        expected = F.rms_norm(x, (32,), ln.w, 1e-5)  # RMSNorm: no centring, no bias
        torch.testing.assert_close(cache["blocks.0.ln1.scale"], (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt())
    torch.testing.assert_close(cache["blocks.0.ln1"], expected)


def test_final_norm_switch():
    with_final = Transformer(ModelConfig(final_norm=True, d_model=16, n_heads=2, d_vocab=5))
    without = Transformer(ModelConfig(final_norm=False, d_model=16, n_heads=2, d_vocab=5))
    assert hasattr(with_final.ln_final, "w") and not list(without.ln_final.parameters())
    _, cache = without.run_with_cache(torch.randint(0, 5, (1, 4)), names=["blocks.1.resid_post", "ln_final"])
    torch.testing.assert_close(cache["ln_final"], cache["blocks.1.resid_post"])  # identity
