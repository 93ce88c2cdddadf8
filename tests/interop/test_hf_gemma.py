"""Gemma: the (1 + w) RMSNorm and the sqrt(d_model) embedding scale folded into the weights, a GELU-tanh gated
MLP and multi-query attention with its own head_dim give HF's logits within 1e-4."""

import pytest
import torch
from hf_models import VOCAB, assert_logits_match, randomize, tokens

from glassformer.interop import from_hf

transformers = pytest.importorskip("transformers")


def test_gemma_logits_match_hf(tmp_path):
    config = transformers.GemmaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=64)
    hf = randomize(transformers.GemmaForCausalLM(config))
    model = from_hf(hf)
    c = model.config
    assert (c.act, c.norm, c.d_head, c.n_kv_heads, c.tie_embeddings) == ("geglu_tanh", "rmsnorm", 16, 1, False)
    x = tokens(pos=20)
    with torch.no_grad():
        assert_logits_match(model(x), hf(x).logits)
    hf.save_pretrained(tmp_path / "gemma")
    with torch.no_grad():
        assert_logits_match(from_hf(tmp_path / "gemma")(x), hf(x).logits)
