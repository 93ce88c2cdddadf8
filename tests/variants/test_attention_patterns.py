"""Attention patterns: each one attends exactly where its paper says, and its fast kernel computes exactly
softmax attention restricted to that pattern (checked against full attention with the pattern imposed
through a hook), or, for linear attention and Linformer, exactly their equations."""

import pytest
import torch
import torch.nn.functional as F
from variant_helpers import scramble

from glassformer import ConfigError, InputError, ModelConfig, Transformer

PATTERNS = {
    "sliding w=5": dict(attention="sliding", window=5),
    "sliding w=1": dict(attention="sliding", window=1),
    "strided l=4": dict(attention="sparse", stride=4),
    "fixed l=5 c=2": dict(attention="sparse", sparse_pattern="fixed", stride=5, sparse_summary=2),
}


def paper_allows(cfg: ModelConfig, i: int, j: int) -> bool:
    """The definitions, as written in the papers (one pair at a time)."""
    if cfg.causal and j > i:
        return False
    if cfg.attention == "sliding":  # Longformer / local attention
        return abs(i - j) < cfg.window
    l = cfg.stride
    if cfg.sparse_pattern == "strided":  # Child et al. 2019, eq. for A(1) and A(2), strided
        return abs(i - j) < l or (i - j) % l == 0
    return i // l == j // l or j % l >= l - cfg.sparse_summary  # fixed


def allowed_matrix(cfg: ModelConfig, n: int) -> torch.Tensor:
    return torch.tensor([[paper_allows(cfg, i, j) for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("arch", ["decoder", "encoder"])
@pytest.mark.parametrize("name", list(PATTERNS))
def test_pattern_support_is_the_papers_definition(arch, name):
    cfg = ModelConfig(arch=arch, d_model=16, n_heads=2, d_vocab=7, n_ctx=32, n_layers=1, **PATTERNS[name])
    model = scramble(Transformer(cfg))
    _, cache = model.run_with_cache(torch.randint(0, 7, (2, 19)), names="blocks.0.attn.pattern")
    pattern = cache["blocks.0.attn.pattern"]  # [batch, heads, q, k]
    expected = allowed_matrix(cfg, 19)
    assert torch.equal(pattern > 0, expected.expand_as(pattern))
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 2, 19))


@pytest.mark.parametrize("arch", ["decoder", "encoder"])
@pytest.mark.parametrize(
    "name, positional",
    [("sliding w=5", "t5"), ("sliding w=5", "rope"), ("sliding w=1", "alibi"), ("strided l=4", "alibi"),
     ("strided l=4", "t5"), ("fixed l=5 c=2", "rope"), ("fixed l=5 c=2", "t5")],
)
def test_fast_kernel_equals_full_attention_with_the_pattern_imposed(arch, name, positional):
    """Same weights in a full-attention model, with -1e9 added outside the pattern by a hook on the scores."""
    kwargs = dict(arch=arch, d_model=32, n_heads=4, n_kv_heads=2, d_vocab=11, n_ctx=40, positional=positional)
    cfg = ModelConfig(**kwargs, **PATTERNS[name])
    model = scramble(Transformer(cfg))
    reference = Transformer(ModelConfig(**kwargs)).eval()
    reference.load_state_dict(model.state_dict())
    tokens = torch.randint(0, 11, (3, 29))  # 29: not a multiple of any block length
    mask = torch.ones(3, 29, dtype=torch.long)
    mask[1, 20:] = 0
    if arch == "encoder":
        mask[2, :3] = 0  # left padding too
    outside = ~allowed_matrix(cfg, 29)

    def impose(scores, hook):
        return scores.masked_fill(outside, -1e9)

    with reference.hooks({"blocks.*.attn.scores": impose}):
        expected = reference(tokens, attention_mask=mask)
    got = model(tokens, attention_mask=mask)  # the blockwise kernels (no hook on scores/pattern)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=2e-5, rtol=1e-4)
    hooked, _ = model.run_with_cache(tokens, attention_mask=mask, names="blocks.*.attn.pattern")  # the dense path
    torch.testing.assert_close(hooked[real], got[real], atol=2e-5, rtol=1e-4)


def phi(x):
    return F.elu(x) + 1


@pytest.mark.parametrize("arch", ["decoder", "encoder"])
def test_linear_attention_is_the_kernel_equation(arch):
    """z_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j), j <= i for a decoder; 150 positions spans
    several 64-position chunks of the prefix sums."""
    cfg = ModelConfig(arch=arch, attention="linear", d_model=16, n_heads=2, d_vocab=7, n_ctx=160, n_layers=1)
    model = scramble(Transformer(cfg))
    _, cache = model.run_with_cache(torch.randint(0, 7, (1, 150)), names=["blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v", "blocks.0.attn.z"])
    q, k, v = (cache[f"blocks.0.attn.{x}"][0].transpose(0, 1) for x in "qkv")  # [heads, pos, d_head]
    weights = phi(q) @ phi(k).transpose(-1, -2)  # [heads, q, k]
    if arch == "decoder":
        weights = weights.tril()
    z = (weights @ v) / (weights.sum(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(cache["blocks.0.attn.z"][0].transpose(0, 1), z, atol=1e-5, rtol=1e-4)
    _, cache = model.run_with_cache(torch.randint(0, 7, (1, 150)), names=["blocks.0.attn.pattern"])
    pattern = cache["blocks.0.attn.pattern"]  # the weights the kernel implies
    torch.testing.assert_close(pattern.sum(-1), torch.ones(1, 2, 150), atol=1e-5, rtol=0)
    assert (pattern > 0).sum().item() == (2 * 150 * 151 // 2 if arch == "decoder" else 2 * 150 * 150)


def test_linformer_is_its_equation():
    cfg = ModelConfig(arch="encoder", attention="linformer", linformer_k=6, d_model=16, n_heads=2, d_vocab=7, n_ctx=24, n_layers=1)
    model = scramble(Transformer(cfg))
    attn = model.blocks[0].attn
    assert attn.E.shape == (6, 24) and attn.F.shape == (6, 24)
    names = [f"blocks.0.attn.{x}" for x in ("q", "k", "v", "pattern", "z")]
    _, cache = model.run_with_cache(torch.randint(0, 7, (2, 20)), names=names)
    q, k, v = (cache[f"blocks.0.attn.{x}"] for x in "qkv")  # [batch, pos, heads, d_head]
    k_proj = torch.einsum("sn,bnhe->bhse", attn.E[:, :20], k)  # [batch, heads, linformer_k, d_head]
    v_proj = torch.einsum("sn,bnhe->bhse", attn.F[:, :20], v)
    pattern = torch.softmax(torch.einsum("bqhe,bhse->bhqs", q, k_proj) / 8**0.5, dim=-1)
    torch.testing.assert_close(cache["blocks.0.attn.pattern"], pattern)  # [batch, heads, q_pos, linformer_k]
    torch.testing.assert_close(cache["blocks.0.attn.z"], torch.einsum("bhqs,bhse->bqhe", pattern, v_proj))
    no_positions = Transformer(cfg.replace(positional="none"))  # learned positions would stop it earlier
    with pytest.raises(InputError, match="linformer' projects at most n_ctx = 24 positions, got 25"):
        no_positions(torch.randint(0, 7, (1, 25)))


def test_linformer_ignores_padding():
    cfg = ModelConfig(arch="encoder", attention="linformer", linformer_k=4, d_model=16, n_heads=2, d_vocab=7, n_ctx=12)
    model = scramble(Transformer(cfg))
    tokens = torch.randint(0, 7, (1, 12))
    mask = torch.tensor([[1] * 8 + [0] * 4])
    other = tokens.clone()
    other[0, 8:] = (other[0, 8:] + 1) % 7
    torch.testing.assert_close(model(tokens, attention_mask=mask)[0, :8], model(other, attention_mask=mask)[0, :8])


def test_pattern_configs_are_validated():
    with pytest.raises(ConfigError, match="needs window"):
        ModelConfig(attention="sliding")
    with pytest.raises(ConfigError, match="window is only used with attention='sliding'"):
        ModelConfig(window=4)
    with pytest.raises(ConfigError, match="arch='encoder'"):
        ModelConfig(attention="linformer", linformer_k=8)
    with pytest.raises(ConfigError, match="needs linformer_k"):
        ModelConfig(arch="encoder", attention="linformer")
    with pytest.raises(ConfigError, match="never forms"):
        ModelConfig(attention="linear", positional="alibi")
    with pytest.raises(ConfigError, match="sparse_summary"):
        ModelConfig(attention="sparse", stride=4, sparse_summary=5)
    with pytest.raises(ConfigError, match="'full', 'sliding', 'sparse', 'linear', 'linformer'"):
        ModelConfig(attention="flash")
    assert ModelConfig(attention="sparse", n_ctx=1024).stride == 32  # l = sqrt(n_ctx) by default
