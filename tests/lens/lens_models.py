"""Small random models of every architecture, with non-trivial norm gains and biases, for the lens tests."""

import pytest
import torch

from glassformer import ModelConfig, Transformer

D_VOCAB = 20


def make_model(**overrides) -> Transformer:
    """A 2-layer model whose every parameter (gains and biases too) is random, so that no identity hides a bug."""
    torch.manual_seed(0)
    fields = dict(d_model=32, n_layers=2, n_heads=4, d_vocab=D_VOCAB, n_ctx=16, init_std=0.3)
    model = Transformer(ModelConfig(**{**fields, **overrides})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 or name.endswith(("b_Q", "b_K", "b_V")):
                p.add_(0.3 * torch.randn_like(p))  # gains 1 +- 0.3, biases +- 0.3
    return model


def inputs_for(model: Transformer, batch: int = 3, pos: int = 10):
    """Random inputs in the form the lens takes: tokens, or {"tokens", "src"} for an encoder-decoder."""
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, D_VOCAB, (batch, pos), generator=g)
    if model.config.arch == "encoder-decoder":
        return {"tokens": tokens, "src": torch.randint(0, D_VOCAB, (batch, pos + 2), generator=g)}
    return tokens


ARCHS = [
    pytest.param({}, id="decoder"),
    pytest.param({"arch": "encoder"}, id="encoder"),
    pytest.param({"arch": "encoder-decoder"}, id="encoder-decoder"),
    pytest.param({"norm": "rmsnorm", "positional": "rope", "bias": False}, id="rmsnorm-rope"),
    pytest.param({"norm": "none", "attn_only": True, "positional": "none"}, id="compiled-like"),
    pytest.param({"act": "swiglu", "n_kv_heads": 2, "qk_norm": True}, id="gated-gqa-qknorm"),
    pytest.param({"tie_embeddings": True, "positional": "sinusoidal"}, id="tied-sinusoidal"),
]
