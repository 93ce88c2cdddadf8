"""Hand-derived gradients (glassformer.explain.gradients) equal autograd's on the model's own modules."""

import numpy as np
import pytest
import torch

from glassformer import InputError, ModelConfig
from glassformer.explain import gradients as G
from glassformer.explain import reference as ref
from glassformer.model.attention import Attention
from glassformer.model.mlp import MLP, GatedMLP
from glassformer.model.norms import LayerNorm, RMSNorm


def randomise(module: torch.nn.Module, seed: int) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    return {n: p.detach().numpy().copy() for n, p in module.named_parameters()}


def autograd(module, inputs: list[torch.Tensor], call, upstream: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of sum(out * upstream) w.r.t. every parameter and input, by autograd."""
    for t in inputs:
        t.requires_grad_(True)
    out = call(*inputs)
    (out * torch.from_numpy(upstream)).sum().backward()
    grads = {n: p.grad.numpy() for n, p in module.named_parameters()}
    grads.update({name: t.grad.numpy() for name, t in zip(("x", "y"), inputs)})
    return grads


@pytest.mark.parametrize("causal,cross,bias", [(True, False, True), (False, False, False), (False, True, True)])
def test_attention_backward_equals_autograd(causal, cross, bias):
    cfg = ModelConfig(d_model=8, n_heads=2, d_vocab=5, bias=bias, attn_scale=0.4 if cross else None)
    attn = Attention(cfg, causal=causal, cross=cross).double()
    params = randomise(attn, 1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 8))
    y = rng.normal(size=(2, 7, 8)) if cross else None
    out, tape = G.attention_forward(params, x, y, scale=cfg.scale, causal=causal and not cross)
    positions = torch.arange(5)
    inputs = [torch.from_numpy(x)] + ([torch.from_numpy(y)] if cross else [])
    call = (lambda a, b: attn(a, b, positions=positions)) if cross else (lambda a: attn(a, positions=positions))
    with torch.no_grad():
        np.testing.assert_allclose(out, call(*inputs).numpy(), rtol=1e-10)
    upstream = rng.normal(size=out.shape)
    expected = autograd(attn, inputs, call, upstream)
    ours = G.attention_backward(params, tape, upstream)
    assert set(ours) == set(expected)
    for name in expected:
        np.testing.assert_allclose(ours[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("act", ["relu", "gelu", "gelu_tanh"])
def test_mlp_backward_equals_autograd(act):
    mlp = MLP(ModelConfig(d_model=6, n_heads=2, d_mlp=10, d_vocab=5, act=act)).double()
    params = randomise(mlp, 3)
    x = np.random.default_rng(4).normal(size=(3, 4, 6))
    out, tape = G.mlp_forward(params, x, act)
    upstream = np.random.default_rng(5).normal(size=out.shape)
    expected = autograd(mlp, [torch.from_numpy(x)], mlp, upstream)
    ours = G.mlp_backward(params, tape, upstream)
    assert set(ours) == set(expected)
    for name in expected:
        np.testing.assert_allclose(ours[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_layer_norm_backward_equals_autograd():
    ln = LayerNorm(6).double()
    params = randomise(ln, 6)
    x = np.random.default_rng(7).normal(size=(2, 3, 6)) * 3 + 1
    y, tape = G.layer_norm_forward(params, x)
    upstream = np.random.default_rng(8).normal(size=y.shape)
    expected = autograd(ln, [torch.from_numpy(x)], ln, upstream)
    ours = G.layer_norm_backward(params, tape, upstream)
    for name in expected:
        np.testing.assert_allclose(ours[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    logits = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 3, 6, 2, 2])
    loss = torch.nn.functional.cross_entropy(logits, targets)
    loss.backward()
    ours_loss, ours_grad = G.cross_entropy(logits.detach().numpy(), targets.numpy())
    assert ours_loss == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(ours_grad, logits.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="unknown activation"):
        G.mlp_forward({"W_in": np.zeros((2, 3)), "W_out": np.zeros((3, 2))}, np.zeros((1, 1, 2)), "swish")
    with pytest.raises(InputError, match="W_O"):
        G.attention_forward({"W_Q": 0, "W_K": 0, "W_V": 0}, np.zeros((1, 1, 2)), scale=1.0, causal=True)


def check(ours: dict, expected: dict) -> None:
    assert set(ours) == set(expected)
    for name in expected:
        np.testing.assert_allclose(ours[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_rms_norm_backward_equals_autograd():
    norm = RMSNorm(6).double()
    params = randomise(norm, 9)
    x = np.random.default_rng(10).normal(size=(2, 3, 6)) * 2 + 0.5
    y, tape = G.rms_norm_forward(params, x)
    with torch.no_grad():
        np.testing.assert_allclose(y, norm(torch.from_numpy(x)).numpy(), rtol=1e-12)
    upstream = np.random.default_rng(11).normal(size=y.shape)
    check(G.rms_norm_backward(params, tape, upstream), autograd(norm, [torch.from_numpy(x)], norm, upstream))


@pytest.mark.parametrize("act,bias", [("swiglu", False), ("geglu", True)])
def test_gated_mlp_backward_equals_autograd(act, bias):
    mlp = GatedMLP(ModelConfig(d_model=6, n_heads=2, d_mlp=10, d_vocab=5, act=act, bias=bias)).double()
    params = randomise(mlp, 12)
    x = np.random.default_rng(13).normal(size=(3, 4, 6))
    out, tape = G.gated_mlp_forward(params, x, act)
    with torch.no_grad():
        np.testing.assert_allclose(out, mlp(torch.from_numpy(x)).numpy(), rtol=1e-10)
    upstream = np.random.default_rng(14).normal(size=out.shape)
    check(G.gated_mlp_backward(params, tape, upstream), autograd(mlp, [torch.from_numpy(x)], mlp, upstream))


@pytest.mark.parametrize("positional,n_kv_heads", [("rope", 4), ("alibi", 4), ("learned", 2), ("rope", 1)])
def test_gqa_rope_and_alibi_attention_backward_equals_autograd(positional, n_kv_heads):
    cfg = ModelConfig(d_model=8, n_heads=4, n_kv_heads=n_kv_heads, d_vocab=5, positional=positional, bias=True)
    attn = Attention(cfg, causal=True).double()
    params = randomise(attn, 15)
    x = np.random.default_rng(16).normal(size=(2, 5, 8))
    positions = np.arange(5)
    rope = (int(cfg.d_head * cfg.rope_fraction), cfg.rope_base) if positional == "rope" else None
    bias = ref.alibi_bias(cfg.n_heads, positions, positions) if positional == "alibi" else None
    out, tape = G.attention_forward(params, x, scale=cfg.scale, causal=True, rope=rope, bias=bias)
    call = lambda a: attn(a, positions=torch.from_numpy(positions))  # noqa: E731
    with torch.no_grad():
        np.testing.assert_allclose(out, call(torch.from_numpy(x)).numpy(), rtol=1e-9)
    upstream = np.random.default_rng(17).normal(size=out.shape)
    expected = autograd(attn, [torch.from_numpy(x)], call, upstream)
    check(G.attention_backward(params, tape, upstream), expected)


def test_embedding_gradients_are_scatter_adds():
    W_E = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    W_pos = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    tokens = torch.tensor([[1, 3, 3, 0], [3, 6, 1, 1]])  # repeated tokens: their gradients add up
    upstream = np.random.default_rng(18).normal(size=(2, 4, 4))
    ((W_E[tokens] + W_pos[torch.arange(4)]) * torch.from_numpy(upstream)).sum().backward()
    np.testing.assert_allclose(G.embedding_backward(tokens.numpy(), upstream, 7), W_E.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(G.positions_backward(upstream, 6), W_pos.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("sizes", [
    dict(norm="layernorm", norm_position="pre", act="gelu", positional="learned"),
    dict(norm="rmsnorm", norm_position="pre", act="swiglu", positional="rope", n_kv_heads=1, bias=False, tie_embeddings=True),
    dict(norm="layernorm", norm_position="post", act="relu", positional="alibi"),
    dict(norm="none", act="gelu_tanh", positional="sinusoidal", attn_only=True),
])
def test_whole_model_backward_equals_autograd(sizes):
    """Every parameter's gradient through a whole 2-layer model (embeddings to loss) matches autograd."""
    from glassformer import Transformer

    torch.manual_seed(19)
    config = ModelConfig(d_model=8, n_heads=2, n_layers=2, d_vocab=7, n_ctx=6, **sizes)
    model = Transformer(config).double()
    randomise(model, 20)
    tokens = torch.randint(0, 7, (3, 6), generator=torch.Generator().manual_seed(21))
    targets = torch.randint(0, 7, (3, 6), generator=torch.Generator().manual_seed(22))
    loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), targets.flatten())
    loss.backward()
    ours_loss, ours = G.model_backward(ref.params_of(model), config, tokens.numpy(), targets.numpy())
    assert ours_loss == pytest.approx(loss.item(), rel=1e-10)
    expected = {n: p.grad.numpy() for n, p in model.named_parameters()}
    check(ours, expected)


def test_model_backward_names_what_it_does_not_cover():
    with pytest.raises(InputError, match="model_backward covers"):
        G.model_backward({}, ModelConfig(d_model=8, n_heads=2, d_vocab=5, qk_norm=True), np.zeros((1, 2), int), np.zeros((1, 2), int))
