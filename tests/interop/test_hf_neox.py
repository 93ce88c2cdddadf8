"""GPT-NeoX / Pythia: partial rotary embeddings and the parallel residual give HF's logits within 1e-4,
with and without the KV cache; a saved folder imports with the same result."""

import pytest
import torch
from hf_models import VOCAB, assert_logits_match, randomize, tokens

from glassformer import ModelConfig, Transformer
from glassformer.errors import ConfigError
from glassformer.interop import from_hf

transformers = pytest.importorskip("transformers")


def neox(**overrides):
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                  max_position_embeddings=64, rotary_pct=0.25, rotary_emb_base=500)
    return randomize(transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**{**kwargs, **overrides})))


@pytest.mark.parametrize("parallel", [True, False])
def test_neox_logits_match_hf(parallel, tmp_path):
    hf = neox(use_parallel_residual=parallel, rotary_pct=0.5 if parallel else 0.25)
    model = from_hf(hf)
    c = model.config
    assert (c.positional, c.rope_fraction, c.rope_base, c.parallel_residual) == ("rope", 0.5 if parallel else 0.25, 500.0, parallel)
    x = tokens(pos=20)
    with torch.no_grad():
        assert_logits_match(model(x), hf(x).logits)
        cache = model.new_cache()
        model(x[:, :10], cache=cache)
        torch.testing.assert_close(model(x[:, 10:], cache=cache), hf(x).logits[:, 10:], atol=1e-4, rtol=0)
    hf.save_pretrained(tmp_path / "pythia")
    with torch.no_grad():
        assert_logits_match(from_hf(tmp_path / "pythia")(x), hf(x).logits)


def test_parallel_residual_is_its_equation():
    """resid_post = resid_pre + Attn(LN1(resid_pre)) + MLP(LN2(resid_pre)): both sublayers read the input."""
    model = Transformer(ModelConfig(arch="decoder", d_model=16, n_layers=1, n_heads=2, d_vocab=10, n_ctx=8, parallel_residual=True))
    _, cache = model.run_with_cache(torch.randint(0, 10, (2, 5)))
    block, x = model.blocks[0], cache["blocks.0.resid_pre"]
    torch.testing.assert_close(cache["blocks.0.mlp_out"], block.mlp(block.ln2(x)))
    torch.testing.assert_close(cache["blocks.0.resid_post"], x + cache["blocks.0.attn_out"] + cache["blocks.0.mlp_out"])
    with pytest.raises(ConfigError, match="parallel_residual needs norm_position='pre'"):
        ModelConfig(parallel_residual=True, norm_position="post")
