"""A run_with_cache of every hook point allocates little beyond what it stores, and the lean paths that make
that so (LayerNorm's fused output beside its cached scale, attention's per-head products written in place)
keep every hook's meaning: a replaced scale still changes the output, gradients still flow through it."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from glassformer import ModelConfig, Transformer


class NewStorageBytes(TorchDispatchMode):
    """Counts the bytes of every tensor an aten op returns in new memory (not a view, not in place)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.bytes += t.untyped_storage().nbytes()
        return out


def _gpt(**overrides) -> Transformer:
    torch.manual_seed(0)
    config = dict(arch="decoder", d_model=64, n_layers=2, n_heads=4, d_mlp=256, d_vocab=50, n_ctx=32, norm="layernorm")
    return Transformer(ModelConfig(**{**config, **overrides})).eval()


def test_caching_every_hook_allocates_little_beyond_what_it_stores():
    """Bytes allocated during the pass / bytes of the cache and logits: 1.20 here (LayerNorm GPT, 8 x 32
    tokens). Before the fix it was 1.82: LayerNorm's written-out equation made four freed temporaries of the
    residual's size per norm, attention's einsums copied q, k, v into head-major order; those freed blocks
    between the cached tensors are what made the peak RSS exceed TransformerLens's (bench/results/lens_cache.md)."""
    model = _gpt()
    tokens = torch.randint(0, 50, (8, 32), generator=torch.Generator().manual_seed(1))
    counter = NewStorageBytes()
    with torch.no_grad(), counter:
        logits, cache = model.run_with_cache(tokens)
    stored = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in [logits, *cache.values()]}
    assert "blocks.1.attn.pattern" in cache and "blocks.1.ln2.scale" in cache
    assert counter.bytes <= 1.3 * sum(stored.values())


def test_cached_layernorm_output_and_scale_are_the_equation():
    model = _gpt()
    tokens = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        plain = model(tokens)
        logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(logits, plain)
    x, ln = cache["blocks.1.resid_mid"], model.blocks[1].ln2
    centred = x - x.mean(-1, keepdim=True)
    scale = (centred.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()
    torch.testing.assert_close(cache["blocks.1.ln2.scale"], scale)
    torch.testing.assert_close(cache["blocks.1.ln2"], centred / scale * ln.w + ln.b, atol=1e-5, rtol=1e-5)


def test_a_replaced_layernorm_scale_changes_the_output():
    """Freezing or patching the norm's divisor (hook ``ln.scale``) is a lens technique: the output must use it."""
    model = _gpt()
    tokens = torch.randint(0, 50, (3, 16))
    seen = {}

    def double(scale, hook):
        return scale * 2

    def keep(x, hook):
        seen[hook.name] = x

    with torch.no_grad(), model.hooks({"ln_final.scale": double, "ln_final": keep, "blocks.1.resid_post": keep}):
        model(tokens)
    x, ln = seen["blocks.1.resid_post"], model.ln_final
    centred = x - x.mean(-1, keepdim=True)
    doubled = 2 * (centred.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()
    torch.testing.assert_close(seen["ln_final"], centred / doubled * ln.w + ln.b, atol=1e-5, rtol=1e-5)


def test_gradient_cache_reaches_the_layernorm_scale_and_the_pattern():
    """grads=True: d metric / d scale is the gradient through (x - mean) / scale (not zero, as it would be were
    the output computed beside the scale), and hooking the pattern (explicit attention, written per head)
    gives the weights the same gradients as the fused kernel."""
    model = _gpt()
    tokens = torch.randint(0, 50, (3, 16))

    def metric(logits):
        return logits[:, -1, 7].sum()

    _, cache = model.run_with_cache(tokens, names=["blocks.1.resid_post", "ln_final.scale"], grads=True, metric=metric)
    x, ln = cache["blocks.1.resid_post"], model.ln_final
    scale = cache["ln_final.scale"].clone().requires_grad_(True)
    with torch.no_grad():
        W_U, b_U = model.unembed.W_U, model.unembed.b_U
    out = ((x - x.mean(-1, keepdim=True)) / scale * ln.w.detach() + ln.b.detach()) @ W_U
    (grad,) = torch.autograd.grad(metric(out + b_U if b_U is not None else out), scale)
    assert grad.abs().max() > 0
    torch.testing.assert_close(cache["ln_final.scale_grad"], grad, atol=1e-5, rtol=1e-4)

    grads = []
    for names in (None, {"blocks.*.attn.pattern": lambda p, hook: None}):
        model.zero_grad()
        with model.hooks(names or {}):
            metric(model(tokens)).backward()
        grads.append(model.blocks[0].attn.W_Q.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)
