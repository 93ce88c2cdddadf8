"""The NumPy reference (glassformer.explain.reference) equals the PyTorch model, hook by hook, in float64."""

import numpy as np
import pytest
import torch

from glassformer import InputError, ModelConfig, Transformer
from glassformer.explain import reference as ref

CONFIGS = [
    dict(arch="decoder", norm="layernorm", norm_position="pre", positional="learned", act="gelu"),
    dict(arch="decoder", norm="rmsnorm", norm_position="post", positional="sinusoidal", act="relu", bias=False),
    dict(arch="decoder", norm="none", positional="rope", rope_fraction=0.5, attn_only=True, n_kv_heads=2),
    dict(arch="decoder", positional="alibi", tie_embeddings=True, act="gelu_tanh", n_kv_heads=1, attn_scale=0.3),
    dict(arch="encoder", norm_position="post", positional="learned", n_classes=3),
    dict(arch="encoder", positional="none", norm="rmsnorm", act="relu"),
    dict(arch="encoder-decoder", positional="sinusoidal", n_decoder_layers=3, d_vocab_out=7),
    dict(arch="encoder-decoder", norm_position="post", positional="rope", n_heads=2, final_norm=True),
    dict(arch="encoder", embed_norm=True, unembed_transform=True, norm_position="post", act="gelu_tanh"),  # BERT
    dict(arch="decoder", qk_norm=True, act="swiglu", positional="rope", norm="rmsnorm", bias=False),  # Llama-like
    dict(arch="decoder", qk_norm=True, act="geglu", n_kv_heads=2),
    dict(arch="encoder-decoder", act="relu2", embed_norm=True, positional="none"),
]
VARIANTS = [  # beyond the 2017 family: each with its own equation in reference_variants.py
    dict(arch="decoder", positional="t5", t5_buckets=8, t5_max_distance=16),
    dict(arch="encoder-decoder", positional="t5", t5_buckets=8, t5_max_distance=16, n_kv_heads=2),
    dict(arch="decoder", attention="sliding", window=3, positional="alibi"),
    dict(arch="encoder", attention="sliding", window=2, positional="rope"),
    dict(arch="decoder", attention="sparse", sparse_pattern="strided", stride=3, positional="t5", t5_buckets=8, t5_max_distance=16),
    dict(arch="encoder", attention="sparse", sparse_pattern="fixed", stride=3, sparse_summary=2, positional="learned"),
    dict(arch="decoder", attention="linear", positional="rope", qk_norm=True),
    dict(arch="encoder", attention="linear", positional="sinusoidal", n_kv_heads=2),
    dict(arch="encoder", attention="linformer", linformer_k=5, positional="learned"),
    dict(arch="encoder", attention="linformer", linformer_k=3, positional="none", n_kv_heads=1, norm_position="post"),
]


def exact_buffers(model: Transformer) -> None:
    """The model keeps its sinusoid/RoPE frequency tables and ALiBi slopes as float32 buffers; give it the
    float64 values so the comparison is at float64 precision, not float32's."""
    cfg = model.config
    for name, buf in model.named_buffers():
        if name.endswith("pos_embed.inv_freq"):
            buf.copy_(torch.from_numpy(ref.sinusoid_frequencies(cfg.d_model)))
        elif name.endswith("rotary.inv_freq"):
            buf.copy_(torch.from_numpy(ref.rope_frequencies(int(cfg.d_head * cfg.rope_fraction), cfg.rope_base)))
        elif name.endswith("alibi.slopes"):
            buf.copy_(torch.from_numpy(ref.alibi_slopes(cfg.n_heads)))


def random_model(seed: int, **overrides) -> Transformer:
    g = torch.Generator().manual_seed(seed)
    sizes = dict(d_model=16, n_layers=2, n_heads=4, d_vocab=11, n_ctx=12, d_mlp=24)
    model = Transformer(ModelConfig(**{**sizes, **overrides})).double().eval()
    with torch.no_grad():
        for p in model.parameters():  # random everything (biases and gains too), not just the init
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    exact_buffers(model)
    return model


@pytest.mark.parametrize("seed,overrides", list(enumerate(CONFIGS + VARIANTS)))
def test_reference_equals_model_at_every_hook(seed, overrides):
    model = random_model(seed, **overrides)
    g = torch.Generator().manual_seed(100 + seed)
    tokens = torch.randint(0, 11, (2, 9), generator=g)
    kwargs, ref_kwargs = {}, {}
    if model.config.arch == "encoder-decoder":
        src = torch.randint(0, 11, (2, 7), generator=g)
        src_mask = torch.ones(2, 7, dtype=torch.long)
        src_mask[1, 5:] = 0  # padding in the source
        kwargs = dict(src=src, src_attention_mask=src_mask)
        ref_kwargs = dict(src=src.numpy(), src_attention_mask=src_mask.numpy())
    elif model.config.arch == "encoder":
        mask = torch.ones(2, 9, dtype=torch.long)
        mask[0, 6:] = 0
        kwargs, ref_kwargs = dict(attention_mask=mask), dict(attention_mask=mask.numpy())
    logits, cache = model.run_with_cache(tokens, **kwargs)
    recorded = {}
    ref_logits = ref.forward(ref.params_of(model), model.config, tokens.numpy(), record=recorded.__setitem__, **ref_kwargs)
    assert set(recorded) == set(cache), set(recorded) ^ set(cache)
    for name, value in cache.items():
        np.testing.assert_allclose(recorded[name], value.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(ref_logits, logits.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_reference_classify_equals_model():
    model = random_model(7, arch="encoder", n_classes=4)
    tokens = torch.randint(0, 11, (3, 8))
    expected = model.classify(tokens).detach().numpy()
    np.testing.assert_allclose(ref.classify(ref.params_of(model), model.config, tokens.numpy()), expected, rtol=1e-10, atol=1e-12)


def test_reference_matches_the_fused_float32_model_too():
    model = Transformer(ModelConfig(d_model=32, n_heads=4, d_vocab=13, n_ctx=16)).eval()
    tokens = torch.randint(0, 13, (2, 10))
    logits = model(tokens).detach().numpy()  # no hooks: the fused attention path
    np.testing.assert_allclose(ref.forward(ref.params_of(model), model.config, tokens.numpy()), logits, atol=1e-5)


def compare(model, inputs, **kwargs):
    logits, cache = model.run_with_cache(inputs, **kwargs)
    recorded = {}
    ref_logits = ref.forward(ref.params_of(model), model.config, inputs.numpy(), record=recorded.__setitem__)
    assert set(recorded) == set(cache), set(recorded) ^ set(cache)
    for name, value in cache.items():
        np.testing.assert_allclose(recorded[name], value.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(ref_logits, logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    return cache


@pytest.mark.parametrize("positional", ["rope", "alibi", "t5"])
def test_transformer_xl_memory_carries_from_segment_to_segment(positional):
    """27 tokens with n_ctx = 12: three segments, each attending to the last memory_len = 5 states of the one before."""
    model = random_model(3, memory_len=5, positional=positional, t5_buckets=8, t5_max_distance=16)
    cache = compare(model, torch.randint(0, 11, (2, 27), generator=torch.Generator().manual_seed(1)))
    assert cache["blocks.1.attn.k"].shape[1] == 5 + 3  # the last segment (3 tokens) reads 5 remembered states


def test_vision_transformer_patches_and_class_token():
    model = random_model(4, arch="encoder", input="patches", image_size=6, patch_size=3, n_channels=2, n_classes=3)
    cache = compare(model, torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    assert cache["embed"].shape == (2, 1 + 4, 16) and cache["logits"].shape == (2, 3)


def test_reference_rejects_bad_tokens():
    model = random_model(0)
    with pytest.raises(InputError, match="outside the vocabulary"):
        ref.forward(ref.params_of(model), model.config, np.array([[0, 11]]))
    with pytest.raises(InputError, match="integer token ids"):
        ref.forward(ref.params_of(model), model.config, np.array([[0.5]]))
    with pytest.raises(InputError, match="source"):
        enc_dec = random_model(0, arch="encoder-decoder")
        ref.forward(ref.params_of(enc_dec), enc_dec.config, np.array([[0, 1]]))
