"""Llama (RoPE, RMSNorm, SwiGLU, grouped-query attention): glassformer logits equal HF's within 1e-4."""

import json

import pytest
import torch
from hf_models import assert_logits_match, incremental_logits, llama, randomize, tokens

from glassformer.errors import CheckpointError
from glassformer.interop import from_hf
from glassformer.model.positional import Rotary

transformers = pytest.importorskip("transformers")
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb  # noqa: E402


def test_rotate_half_rope_is_glassformers_rotary():
    """HF's rotate_half RoPE (pairs i and i + d/2, cos/sin = cat(freqs, freqs)) is exactly glassformer's
    Rotary: same dimensions paired, same angles, so W_Q/W_K need no permutation."""
    config = transformers.LlamaConfig(hidden_size=64, num_attention_heads=4, rope_theta=500.0)
    x = torch.randn(2, 4, 9, 16)  # [batch, heads, pos, d_head] in HF's layout
    positions = torch.arange(3, 12)
    cos, sin = LlamaRotaryEmbedding(config)(x, positions[None])
    theirs, _ = apply_rotary_pos_emb(x, x, cos, sin)
    ours = Rotary(16, base=500.0)(x.transpose(1, 2), positions).transpose(1, 2)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    # the paper's pairing (2i, 2i+1) is a different function on the same weights: the test can tell them apart
    evens_then_odds = torch.cat([torch.arange(0, 16, 2), torch.arange(1, 16, 2)])
    paper = Rotary(16, base=500.0)(x.transpose(1, 2)[..., evens_then_odds], positions)[..., torch.argsort(evens_then_odds)]
    assert not torch.allclose(paper.transpose(1, 2), theirs, atol=1e-3)


def test_llama_gqa_logits_match_hf():
    hf = llama()
    model = from_hf(hf)
    c = model.config
    assert (c.n_heads, c.n_kv_heads, c.act, c.norm, c.positional, c.rope_base) == (4, 2, "swiglu", "rmsnorm", "rope", 500.0)
    assert not c.bias and not c.tie_embeddings
    x = tokens(pos=16)
    assert_logits_match(model(x), hf(x).logits)


def test_llama_kv_cache_matches_hf_full_logits():
    hf = llama()
    model = from_hf(hf)
    x = tokens(pos=20)
    assert_logits_match(incremental_logits(model, x), hf(x).logits)
    assert model.new_cache is not None


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_key_value_heads": 1},  # multi-query
        {"head_dim": 16},  # n_heads * d_head != d_model
        {"attention_bias": True, "tie_word_embeddings": True},  # q/k/v/o biases, lm_head tied to the embedding
        {"mlp_bias": True, "hidden_act": "gelu"},  # GeGLU with MLP biases
    ],
)
def test_llama_variants_match_hf(overrides):
    hf = llama(**overrides)
    model = from_hf(hf)
    x = tokens(pos=14)
    assert_logits_match(model(x), hf(x).logits)
    assert_logits_match(incremental_logits(model, x), hf(x).logits)


def test_llama_from_saved_folder_and_old_style_config(tmp_path):
    hf = llama()
    hf.save_pretrained(tmp_path)
    x = tokens(pos=16)
    assert_logits_match(from_hf(tmp_path)(x), hf(x).logits)
    # transformers 4.x wrote rope_theta at the top level (and rope_scaling: null)
    config = json.loads((tmp_path / "config.json").read_text())
    theta = config.pop("rope_parameters")["rope_theta"]
    (tmp_path / "config.json").write_text(json.dumps({**config, "rope_theta": theta, "rope_scaling": None}))
    model = from_hf(tmp_path)
    assert model.config.rope_base == 500.0
    assert_logits_match(model(x), hf(x).logits)


def test_llama_scaled_rope_is_refused(tmp_path):
    hf = llama()
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="llama3"):
        from_hf(tmp_path)


def test_llama_sharded_checkpoint(tmp_path):
    hf = llama()
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file() and len(list(tmp_path.glob("*.safetensors"))) > 1
    x = tokens()
    assert_logits_match(from_hf(tmp_path)(x), hf(x).logits)


def test_float16_source_is_imported_in_float32():
    hf = llama().to(torch.float16)
    model = from_hf(hf)
    assert next(model.parameters()).dtype == torch.float32
    ref = llama()  # same seed, float32: the float16 weights are its rounding
    x = tokens()
    torch.testing.assert_close(model(x), ref(x).logits, atol=0.05, rtol=0)


def _family(kind: str, **overrides):
    config_class, model_class = {
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    }[kind]
    kwargs = dict(
        vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rope_theta=500.0, bos_token_id=0, eos_token_id=0,
    )
    return randomize(model_class(config_class(**{**kwargs, **overrides})))


def test_qwen2_qkv_biases_match_hf():
    """Qwen2 = Llama with biases on q/k/v only (o_proj and the MLP have none: loaded as zeros)."""
    hf = _family("qwen2")
    model = from_hf(hf)
    assert model.config.bias
    assert model.blocks[0].attn.b_Q.abs().sum() > 0 and model.blocks[0].attn.b_O.abs().sum() == 0
    x = tokens(pos=16)
    assert_logits_match(model(x), hf(x).logits)
    assert_logits_match(incremental_logits(model, x), hf(x).logits)


def test_qwen2_mixed_sliding_and_full_layers_is_refused():
    hf = _family("qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=1)
    with pytest.raises(CheckpointError, match="mix of sliding-window and full-attention layers"):
        from_hf(hf)


def test_mistral_full_attention_matches_hf():
    hf = _family("mistral", sliding_window=None)
    x = tokens(pos=16)
    assert_logits_match(from_hf(hf)(x), hf(x).logits)


def test_mistral_sliding_window_matches_hf():
    from glassformer.model.config import CHOICES

    if "sliding" not in CHOICES.get("attention", ()):
        pytest.skip("glassformer's sliding-window attention is not available")
    hf = _family("mistral", sliding_window=4)
    model = from_hf(hf)
    assert (model.config.attention, model.config.window) == ("sliding", 4)
    x = tokens(pos=16)
    assert_logits_match(model(x), hf(x).logits)
    assert_logits_match(incremental_logits(model, x), hf(x).logits)
    # the window matters: the same weights with full attention give other logits
    full = from_hf(_family("mistral", sliding_window=None))
    assert not torch.allclose(full(x), hf(x).logits, atol=1e-2)
