"""Incremental decoding with the KV cache gives exactly the logits of the full forward pass."""

import pytest
import torch

from glassformer import ModelConfig, Transformer


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rope", "alibi"])
@pytest.mark.parametrize("n_kv_heads", [4, 1])
def test_decoder_cache_matches_full_forward(positional, n_kv_heads):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=32, n_heads=4, n_kv_heads=n_kv_heads, d_vocab=11, positional=positional)).eval()
    tokens = torch.randint(0, 11, (2, 10))
    full = model(tokens)
    cache = model.new_cache()
    steps = [model(tokens[:, :4], cache=cache)] + [model(tokens[:, t : t + 1], cache=cache) for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.offset == 10
    assert cache.layers[0].k.shape == (2, 10, n_kv_heads, 8)  # GQA: the cache holds only the kv heads


def test_encoder_decoder_cache_matches_full_forward():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(arch="encoder-decoder", d_model=32, n_heads=4, d_vocab=11)).eval()
    src, tgt = torch.randint(0, 11, (2, 7)), torch.randint(0, 11, (2, 6))
    full = model(tgt, src=src)
    memory, cache = model.encode(src), model.new_cache()
    steps = [model(tgt[:, t : t + 1], memory=memory, cache=cache) for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_reorder_follows_beams():
    model = Transformer(ModelConfig(d_model=16, n_heads=2, d_vocab=5)).eval()
    cache = model.new_cache()
    model(torch.randint(0, 5, (3, 4)), cache=cache)
    k = cache.layers[1].k.clone()
    cache.reorder(torch.tensor([2, 2, 0]))
    torch.testing.assert_close(cache.layers[1].k, k[[2, 2, 0]])


def test_cache_buffer_grows_and_slides_without_changing_the_logits():
    """The cache writes into a preallocated buffer that doubles when full (and, for a sliding window,
    slides its kept keys to the front): one token at a time over 5x the first chunk, every step's
    logits equal the full forward's."""
    torch.manual_seed(0)
    for extra in ({}, {"attention": "sliding", "window": 3}):
        model = Transformer(ModelConfig(d_model=16, n_heads=2, d_vocab=7, n_ctx=64, positional="rope", **extra)).eval()
        tokens = torch.randint(0, 7, (2, 40))
        full = model(tokens)
        cache = model.new_cache()
        steps = [model(tokens[:, :8], cache=cache)] + [model(tokens[:, t : t + 1], cache=cache) for t in range(8, 40)]
        torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
        layer = cache.layers[0]
        kept = 40 if not extra else 2  # a window of 3 keeps the last 2 keys for the next query
        assert layer.k.shape == (2, kept, 2, 8) and layer.seen == 40
        assert layer.k_buffer.shape[1] <= 2 * 40  # amortised doubling, not one slot per append


def test_a_chunk_larger_than_the_buffer_fits():
    model = Transformer(ModelConfig(d_model=16, n_heads=2, d_vocab=7, n_ctx=64)).eval()
    tokens = torch.randint(0, 7, (1, 30))
    cache = model.new_cache()
    steps = [model(tokens[:, :2], cache=cache), model(tokens[:, 2:30], cache=cache)]
    torch.testing.assert_close(torch.cat(steps, dim=1), model(tokens), atol=1e-5, rtol=1e-5)
    assert cache.layers[0].k.shape[1] == 30


def test_gradients_flow_through_cached_decoding():
    """With autograd recording, the cache must not write into keys saved for backward: the gradient of a loss
    over cached steps equals the gradient of the same loss over the full forward."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=16, n_heads=2, d_vocab=7, n_ctx=16))
    tokens = torch.randint(0, 7, (2, 9))
    cache = model.new_cache()
    cached = torch.cat([model(tokens[:, :5], cache=cache)] + [model(tokens[:, t : t + 1], cache=cache) for t in range(5, 9)], dim=1)
    cached.square().mean().backward()
    grad = model.blocks[0].attn.W_K.grad.clone()
    model.zero_grad()
    model(tokens).square().mean().backward()
    torch.testing.assert_close(grad, model.blocks[0].attn.W_K.grad, atol=1e-6, rtol=1e-4)


def test_a_sliding_window_cache_stays_small_after_a_long_prompt():
    model = Transformer(ModelConfig(d_model=16, n_heads=2, d_vocab=7, n_ctx=512, positional="rope", attention="sliding", window=4)).eval()
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(0, 7, (1, 400)), cache=cache)
        for _ in range(10):
            model(torch.randint(0, 7, (1, 1)), cache=cache)
    layer = cache.layers[0]
    assert layer.k.shape[1] == 3 and layer.k_buffer.shape[1] <= 8  # about two windows, not the prompt's 400


def test_a_cloned_cache_continues_independently():
    """Run a prefix once, clone the cache, continue each copy differently: each equals its full forward."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=16, n_heads=2, d_vocab=7, n_ctx=16)).eval()
    prefix, a, b = torch.randint(0, 7, (2, 6)), torch.randint(0, 7, (2, 3)), torch.randint(0, 7, (2, 3))
    with torch.no_grad():
        cache = model.new_cache()
        model(prefix, cache=cache)
        other = cache.clone()
        out_a, out_b = model(a, cache=cache), model(b, cache=other)
        torch.testing.assert_close(out_a, model(torch.cat([prefix, a], 1))[:, 6:], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out_b, model(torch.cat([prefix, b], 1))[:, 6:], atol=1e-5, rtol=1e-5)
    assert cache.offset == other.offset == 9
