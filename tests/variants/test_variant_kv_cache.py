"""Every causal variant decodes incrementally with the KV cache to exactly the logits of the full forward
pass, and the cache holds what the variant needs: all keys, the last window - 1, or two running sums."""

import pytest
import torch
from variant_helpers import scramble

from glassformer import InputError, ModelConfig, Transformer

CAUSAL_VARIANTS = {
    "qk_norm": dict(qk_norm=True, positional="rope"),
    "t5": dict(positional="t5"),
    "relu2 + rmsnorm": dict(act="relu2", norm="rmsnorm"),
    "swiglu + gqa": dict(act="swiglu", n_kv_heads=2, bias=False, positional="rope"),
    "geglu": dict(act="geglu", positional="alibi"),
    "sliding": dict(attention="sliding", window=6, positional="alibi"),
    "sliding + mqa": dict(attention="sliding", window=4, n_kv_heads=1, positional="rope"),
    "sparse strided": dict(attention="sparse", stride=4, positional="t5"),
    "sparse fixed": dict(attention="sparse", sparse_pattern="fixed", stride=5, sparse_summary=2, positional="rope"),
    "linear": dict(attention="linear", positional="rope"),
    "linear + gqa": dict(attention="linear", n_kv_heads=2),
    "transformer-xl": dict(memory_len=8, positional="rope"),
}


@pytest.mark.parametrize("name", list(CAUSAL_VARIANTS))
def test_incremental_decoding_equals_the_full_forward(name):
    cfg = ModelConfig(d_model=32, n_heads=4, d_vocab=11, n_ctx=40, **CAUSAL_VARIANTS[name])
    model = scramble(Transformer(cfg))
    tokens = torch.randint(0, 11, (2, 26))
    full = model(tokens)
    cache = model.new_cache()
    steps = [model(tokens[:, :9], cache=cache)]  # a prompt, then one token at a time
    steps += [model(tokens[:, t : t + 1], cache=cache) for t in range(9, 26)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=2e-5, rtol=1e-4)
    assert cache.offset == 26


@pytest.mark.parametrize("name", ["sliding", "sparse fixed", "linear", "swiglu + gqa"])
def test_generate_with_and_without_cache_agree(name):
    cfg = ModelConfig(d_model=32, n_heads=4, d_vocab=11, n_ctx=40, **CAUSAL_VARIANTS[name])
    model = scramble(Transformer(cfg), std=0.15)
    prompt = torch.randint(0, 11, (2, 5))
    with_cache = model.generate(prompt, 20, greedy=True, use_cache=True)
    without = model.generate(prompt, 20, greedy=True, use_cache=False)
    assert torch.equal(with_cache, without)


def cache_sizes(cfg: ModelConfig, lengths: list[int]) -> list[int]:
    model = Transformer(cfg).eval()
    cache, sizes, fed = model.new_cache(), [], 0
    for n in lengths:
        model(torch.randint(0, 11, (1, n - fed)), cache=cache)
        fed = n
        sizes.append(cache.nbytes())
    return sizes


def test_what_each_cache_holds():
    base = dict(d_model=32, n_heads=4, d_vocab=11, n_ctx=64, positional="rope")
    full = cache_sizes(ModelConfig(**base), [8, 16, 32])
    assert full[1] == 2 * full[0] and full[2] == 4 * full[0]  # grows with the sequence
    sliding = cache_sizes(ModelConfig(**base, attention="sliding", window=5), [8, 16, 32])
    assert sliding[0] == sliding[1] == sliding[2] == full[0] * 4 // 8  # window - 1 = 4 positions, for ever
    linear = cache_sizes(ModelConfig(**base, attention="linear"), [8, 16, 32])
    assert linear[0] == linear[1] == linear[2]  # S and u: constant
    model = Transformer(ModelConfig(**base, attention="linear", n_kv_heads=2))
    cache = model.new_cache()
    model(torch.randint(0, 11, (1, 5)), cache=cache)
    assert cache.layers[0].S.shape == (1, 2, 8, 8) and cache.layers[0].u.shape == (1, 2, 8)  # per kv head
    assert cache.layers[0].k is None


def test_linear_attention_pattern_needs_the_keys_the_cache_dropped():
    model = Transformer(ModelConfig(d_model=16, n_heads=2, d_vocab=5, attention="linear")).eval()
    cache = model.new_cache()
    model(torch.randint(0, 5, (1, 4)), cache=cache)
    with pytest.raises(InputError, match="keeps no past keys"):
        model.run_with_cache(torch.randint(0, 5, (1, 1)), cache=cache, names="blocks.0.attn.pattern")
    with pytest.raises(InputError, match="needs a causal model"):
        Transformer(ModelConfig(arch="encoder", attention="linformer", linformer_k=4)).new_cache()
