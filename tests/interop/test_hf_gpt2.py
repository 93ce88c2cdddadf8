"""GPT-2: import from HF (in memory and from a saved folder) and export back, logits equal within 1e-4."""

import pytest
import torch
from hf_models import assert_logits_match, gpt2, incremental_logits, randomize, tokens

from glassformer import ModelConfig, Transformer
from glassformer.errors import ConfigError, InputError
from glassformer.interop import from_hf, to_hf_gpt2

transformers = pytest.importorskip("transformers")


def test_gpt2_logits_match_hf():
    hf = gpt2()
    model = from_hf(hf)
    assert model.config.tie_embeddings and model.config.act == "gelu_tanh" and model.config.n_ctx == 32
    x = tokens()
    assert_logits_match(model(x), hf(x).logits)


def test_gpt2_kv_cache_matches_hf_full_logits():
    hf = gpt2()
    model = from_hf(hf)
    x = tokens(pos=20)
    assert_logits_match(incremental_logits(model, x), hf(x).logits)


def test_gpt2_from_saved_folder(tmp_path):
    hf = gpt2()
    hf.save_pretrained(tmp_path)  # config.json + model.safetensors (lm_head is tied, so not stored)
    model = from_hf(tmp_path)
    x = tokens()
    assert_logits_match(model(x), hf(x).logits)
    assert_logits_match(incremental_logits(model, x), hf(x).logits)


def test_gpt2_untied_lm_head_and_relu_unscaled():
    """tie_word_embeddings=False keeps lm_head separate; scale_attn_weights=False means scores are q.k."""
    hf = gpt2(tie_word_embeddings=False, activation_function="relu", scale_attn_weights=False, n_inner=40)
    assert not torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)
    model = from_hf(hf)
    assert not model.config.tie_embeddings and model.config.scale == 1.0 and model.config.d_mlp == 40
    x = tokens()
    assert_logits_match(model(x), hf(x).logits)


def test_gpt2_bare_model_reads_as_tied():
    """A GPT2Model (no head, no 'transformer.' prefix) gives the LM whose head is the tied embedding."""
    hf = gpt2()
    model = from_hf(hf.transformer)
    x = tokens()
    assert_logits_match(model(x), hf(x).logits)


def _random_gpt2_shaped(**changes) -> Transformer:
    config = ModelConfig(d_model=32, n_layers=2, n_heads=4, d_vocab=50, n_ctx=24, act="gelu_tanh", **changes)
    model = Transformer(config).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "unembed.b_U":  # GPT-2 has no unembedding bias
                p.copy_((1.0 if name.endswith(".w") else 0.0) + 0.3 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("tie", [True, False])
def test_export_to_hf_gpt2_round_trip(tmp_path, tie):
    """glassformer -> HF GPT2LMHeadModel: same logits; saved and re-imported: the same parameters."""
    model = _random_gpt2_shaped(tie_embeddings=tie)
    hf = to_hf_gpt2(model)
    assert isinstance(hf, transformers.GPT2LMHeadModel)
    x = torch.randint(0, 50, (3, 24), generator=torch.Generator().manual_seed(0))
    assert_logits_match(hf(x).logits, model(x))
    hf.save_pretrained(tmp_path)
    back = from_hf(tmp_path)
    assert back.config == model.config
    for name, p in model.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], p, atol=0, rtol=0, msg=name)


def test_hf_to_glassformer_to_hf_keeps_every_tensor():
    hf = gpt2()
    again = to_hf_gpt2(from_hf(hf))
    original = hf.state_dict()
    for name, tensor in again.state_dict().items():
        torch.testing.assert_close(tensor, original[name], atol=0, rtol=0, msg=name)


def test_export_keeps_unscaled_attention():
    model = _random_gpt2_shaped(attn_scale=1.0)
    hf = to_hf_gpt2(model)
    assert hf.config.scale_attn_weights is False
    x = torch.randint(0, 50, (2, 10))
    assert_logits_match(hf(x).logits, model(x))


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"norm": "rmsnorm"}, "norm"),
        ({"positional": "rope"}, "positional"),
        ({"norm_position": "post"}, "norm_position"),
        ({"n_kv_heads": 2}, "n_kv_heads"),
        ({"bias": False}, "bias"),
        ({"act": "swiglu"}, "act"),
        ({"attn_scale": 0.5}, "attn_scale"),
    ],
)
def test_export_refuses_what_gpt2_cannot_express(changes, field):
    with pytest.raises(ConfigError, match=field):
        to_hf_gpt2(Transformer(ModelConfig(d_model=32, n_heads=4, d_vocab=20, n_ctx=16, **changes)))


def test_export_refuses_an_unembedding_bias():
    model = randomize(Transformer(ModelConfig(d_model=32, n_heads=4, d_vocab=20, n_ctx=16)))
    with pytest.raises(InputError, match="b_U"):
        to_hf_gpt2(model)


def test_export_declares_an_end_token_only_for_gpt2s_vocabulary():
    """GPT-2's <|endoftext|> is 50256 of 50,257; a small (e.g. character) vocabulary has no known end token,
    and declaring one would make HF's generate stop on an ordinary token: both sides then emit the same tokens."""
    torch.manual_seed(0)
    small = Transformer(ModelConfig(d_model=16, n_heads=2, d_vocab=17, n_ctx=16, act="gelu_tanh"))
    hf = to_hf_gpt2(small)
    assert hf.config.eos_token_id is None and hf.generation_config.eos_token_id is None
    prompt = torch.randint(0, 17, (1, 4))
    with torch.no_grad():
        theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(theirs, small.generate(prompt, 8, greedy=True))
    full = to_hf_gpt2(Transformer(ModelConfig(d_model=8, n_heads=2, n_layers=1, d_vocab=50257, n_ctx=8, act="gelu_tanh")))
    assert full.config.eos_token_id == full.config.bos_token_id == 50256
